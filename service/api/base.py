"""What every JSON API blueprint shares: the bearer-token check, client errors as problem documents, and the
helpers that read a request's arguments and find its user.

Each area of the API (``routes``, ``tenantwide``, ``timeside``, ``channels``) makes its own blueprint with
``blueprint()`` and is registered by ``service.app`` like any other area; none imports another.
"""

from __future__ import annotations

import hmac
from datetime import datetime

from flask import Blueprint, current_app, request

from service import cursors, inputs
from service.store import as_utc
from service.store import users as users_store
from service.store.records import User
from service.web import problems
from service.web.csrf import csrf


class BadRequest(ValueError):
    """A client error whose message is safe to return; ``parameter`` (a query parameter) or ``pointer`` (a JSON
    Pointer into the body) names the input at fault."""

    def __init__(self, message: str, parameter: str | None = None, pointer: str | None = None):
        super().__init__(message)
        self.parameter, self.pointer = parameter, pointer


def blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint under ``/api``: bearer token required, no CSRF (service-to-service calls, never a browser
    session), ``BadRequest`` and ``inputs.BadInput`` answered as 400 problem documents."""
    bp = Blueprint(name, import_name, url_prefix="/api")
    csrf.exempt(bp)
    bp.before_request(require_token)
    bp.register_error_handler(BadRequest, bad_request)
    bp.register_error_handler(inputs.BadInput, bad_input)
    return bp


def require_token():
    """401 unless the request carries the ops bearer token (constant-time comparison)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = current_app.extensions["calsync"].settings.ops_token
    if scheme.lower() != "bearer" or not token or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return problems.problem("unauthorized", "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
    return None


def bad_request(exc: BadRequest):
    where = ([problems.parameter(exc.parameter, str(exc))] if exc.parameter else
             [problems.pointer(exc.pointer, str(exc))] if exc.pointer else None)
    return problems.problem("bad-request", str(exc), where)


def bad_input(exc: inputs.BadInput):
    in_query = exc.name is not None and exc.name in request.args
    return problems.problem("bad-request", str(exc), [problems.parameter(exc.name, str(exc))] if in_query else None)


def db():
    return current_app.extensions["calsync"].db


def iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def time_arg(name: str, default: datetime) -> datetime:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return inputs.instant(raw, name)


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return inputs.whole_number(raw, name, low, high)


def cursor_arg(expected_len: int) -> list | None:
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        return cursors.decode(raw, expected_len)
    except ValueError as exc:
        raise BadRequest(str(exc), parameter="cursor") from None


def user_or_none(key: str) -> User | None:
    """The user addressed by email or Graph id (None if there is none, or the key cannot be one)."""
    return users_store.find(db(), key.strip()) if 0 < len(key) <= 320 else None


def not_found():
    return problems.problem("not-found", "no such user")
