"""Graph-shaped errors: every failure leaves the emulator as {"error": {"code", "message", "innerError"}}."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from flask import Flask, Response, g, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class GraphError(Exception):
    """An error response in Graph's shape; raise it anywhere under a request."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(message: str, code: str = "ResourceNotFound") -> GraphError:
    return GraphError(404, code, message)


MAX_CLIENT_REQUEST_ID = 100


def request_ids() -> tuple[str, str]:
    """(request-id, client-request-id) of the current request: Graph names every request it answers and echoes
    the caller's ``client-request-id`` (or, without one, uses its own request id for both)."""
    if not has_request_context():
        fresh = str(uuid.uuid4())
        return fresh, fresh
    if "request_ids" not in g:
        request_id = str(uuid.uuid4())
        given = request.headers.get("client-request-id", "").strip()
        g.request_ids = (request_id, given if 0 < len(given) <= MAX_CLIENT_REQUEST_ID else request_id)
    return g.request_ids


def error_body(code: str, message: str, request_id: str | None = None) -> dict:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S")
    own, client = request_ids()
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": now, "request-id": request_id or own, "client-request-id": client},
        }
    }


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(error_body(code, message))
    response.status_code = status
    add_request_ids(response)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def add_request_ids(response: Response) -> Response:
    """Graph's ``request-id`` and the echoed ``client-request-id`` on an answer (successes included)."""
    own, client = request_ids()
    response.headers["request-id"] = own
    response.headers["client-request-id"] = client
    return response


_HTTP_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Forbidden",
    404: "ResourceNotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
}


def install_error_handlers(app: Flask) -> None:
    """Turn GraphError, HTTP errors and any unexpected exception into Graph error bodies (no stack traces)."""

    @app.errorhandler(GraphError)
    def _graph_error(exc: GraphError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "UnknownError")
        return error_response(status, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("emulator: unexpected error")
        return error_response(500, "InternalServerError", "An internal server error occurred.")
