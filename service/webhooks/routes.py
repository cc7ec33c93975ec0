"""``/webhooks/graph`` and ``/webhooks/graph/lifecycle``: thin HTTP adapters around the receiver.

Graph allows 3 seconds for a 2xx; we answer 202 as soon as the work is in Redis, 5xx when it cannot be
queued (Graph redelivers), 413 above the size limit and 400 for anything that is not a notification
collection. Bodies and tokens are never logged.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, current_app, request
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from service import metrics
from service.web.csrf import csrf
from service.webhooks import receiver
from service.webhooks.notifications import BadPayload, parse_collection, validation_token

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)
csrf.exempt(bp)  # Graph calls these; clientState and validation tokens decide what is trusted

PLAIN_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "no-store",
}


@bp.route("/webhooks/graph", methods=["GET", "POST"])
def changes() -> Response:
    return _handle(receiver.receive_changes, lifecycle=False)


@bp.route("/webhooks/graph/lifecycle", methods=["GET", "POST"])
def lifecycle() -> Response:
    return _handle(receiver.receive_lifecycle, lifecycle=True)


def _handle(receive, *, lifecycle: bool) -> Response:
    route = "lifecycle" if lifecycle else "changes"
    started = time.monotonic()
    response = _answer(receive, lifecycle=lifecycle, route=route)
    metrics.WEBHOOK_SECONDS.labels(route, str(response.status_code)).observe(time.monotonic() - started)
    return response


def _answer(receive, *, lifecycle: bool, route: str) -> Response:
    try:
        token = validation_token(request.args)
    except BadPayload as exc:
        return _plain(str(exc), 400)
    if token is not None:
        return _plain(token, 200)  # the decoded token, as text/plain, and nothing else
    if request.method != "POST":
        return _plain("expected a validationToken or a POSTed notification collection", 400)
    text, status, extra = answer_post(current_app.extensions["calsync"], receive, lifecycle=lifecycle, route=route,
                                      content_length=request.content_length, read=request.stream.read)
    return _plain(text, status, extra)


def answer_post(rt, receive, *, lifecycle: bool, route: str, content_length: int | None,
                read) -> tuple[str, int, dict[str, str] | None]:
    """(text, status, extra headers) for a POSTed notification collection: the body is read with ``read``
    (at most the size limit plus one byte), parsed, and handed to ``receive``. Shared by the Flask view and
    ``service.webhooks.fast``."""
    limit = rt.settings.max_notification_bytes
    if content_length is not None and content_length > limit:
        return "request body too large", 413, None
    body = read(limit + 1)
    if len(body) > limit:
        return "request body too large", 413, None
    try:
        collection = parse_collection(body, lifecycle=lifecycle)
    except BadPayload as exc:
        log.info("rejected a webhook body (%d bytes): %s", len(body), exc)
        return str(exc), 400, None
    try:
        verdict = receive(rt.redis, rt.db, collection)
    except (RedisError, PyMongoError) as exc:
        log.error("could not queue %d notification(s), asking Graph to redeliver: %s",
                  len(collection.items), type(exc).__name__)
        return "temporarily unable to accept notifications", 503, {"Retry-After": "5"}
    metrics.WEBHOOK_NOTIFICATIONS.labels(route, "accepted").inc(len(verdict.accepted))
    for reason, count in verdict.dropped.items():
        metrics.WEBHOOK_NOTIFICATIONS.labels(route, "dropped").inc(count)
        metrics.WEBHOOK_DROPPED.labels(route, reason).inc(count)
    return "", 202, None


def _plain(text: str, status: int, extra: dict[str, str] | None = None) -> Response:
    response = Response(text, status=status, mimetype="text/plain")
    response.headers.update(PLAIN_HEADERS)
    if extra:
        response.headers.update(extra)
    return response
