"""The JSON API of channel choices: where each kind of message goes, per user and as a tenant's default
(bearer CALSYNC_OPS_TOKEN, as the rest of /api), and each channel's status for the user."""

from __future__ import annotations

import logging

from flask import current_app, jsonify, request

from service.api import base
from service.channels.status import status_of
from service.store import channels as store
from service.web import problems

log = logging.getLogger(__name__)

bp = base.blueprint("channels_api", __name__)


def _db():
    return current_app.extensions["calsync"].db


def _answer(db, user):
    return jsonify({"channels": store.choice(db, user.id, user.tenant_id), "status": status_of(db, user)})


def _invalid(detail: str):
    return problems.problem("bad-request", detail, errors=[{"detail": detail, "pointer": "/channels"}])


@bp.get("/users/<key>/channels")
def get_channels(key: str):
    """Where each kind of message goes for the user, and each channel's status."""
    user = base.user_or_none(key)
    if user is None:
        return problems.problem("not-found", "no such user")
    return _answer(_db(), user)


@bp.put("/users/<key>/channels")
def put_channels(key: str):
    """Choose channels for some kinds ({"channels": {"digest": ["email", "slack"], ...}}); others stay."""
    user = base.user_or_none(key)
    if user is None:
        return problems.problem("not-found", "no such user")
    body = request.get_json(silent=True)
    chosen = store.clean_choice(body.get("channels")) if isinstance(body, dict) else None
    if chosen is None:
        return _invalid(f"channels must map some of {', '.join(store.KINDS)} to a non-empty list of "
                        f"{', '.join(store.CHANNELS)}")
    store.set_choice(_db(), user.id, chosen)
    log.info("channels changed through the API for user %s", user.id)
    return _answer(_db(), user)


@bp.put("/tenants/<tenant_id>/channels")
def put_tenant_channels(tenant_id: str):
    """An operator's default for everyone in a tenant who has not chosen for themselves."""
    body = request.get_json(silent=True)
    chosen = store.clean_choice(body.get("channels")) if isinstance(body, dict) else None
    if chosen is None or not 0 < len(tenant_id) <= 64:
        return _invalid(f"channels must map some of {', '.join(store.KINDS)} to a non-empty list of "
                        f"{', '.join(store.CHANNELS)}")
    store.set_tenant_default(_db(), tenant_id, chosen)
    return jsonify({"tenant_id": tenant_id, "channels": {**store.DEFAULT, **chosen}})
