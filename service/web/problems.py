"""Problem details (RFC 9457, ``application/problem+json``): the one error envelope of every JSON API.

Every error from ``/api`` and ``/ops/api`` (and any JSON answer of a page route) is a problem object::

    {"type": "https://calsync.example/problems/not-found", "title": "Not found", "status": 404,
     "detail": "no such user", "instance": "/api/users/nobody@example.com", "code": "not_found",
     "request_id": "4f1c…"}

``type`` names the kind of problem (each is documented at its URL, served by ``/problems/<name>``), ``title``
is the same for every occurrence of the kind, ``detail`` says what went wrong with this request (safe to show:
never a secret), ``instance`` is the request's path. Extension members: ``code`` (the kind as a snake_case
word, what the pre-2027 ``{"error": {"code"}}`` envelope carried), ``request_id`` (the ``X-Request-Id`` sent
back: quote it when reporting a problem), ``errors`` (one entry per invalid input: ``{"detail", "pointer"}``
with a JSON Pointer into the body, or ``{"detail", "parameter"}`` for a query parameter) and, for some kinds,
more (``rejected`` rows of a people import). Blueprints raise ``Problem`` or return ``problem(...)``; the app's
error handlers turn werkzeug's HTTP errors under the API prefixes into the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Response, current_app, g, has_request_context, json, request
from werkzeug.exceptions import HTTPException

MEDIA_TYPE = "application/problem+json"
API_PREFIXES = ("/api/", "/ops/api/")


@dataclass(frozen=True)
class Kind:
    """One type of problem: its URL's last segment, status, title, and what it means (its documentation)."""

    name: str
    status: int
    title: str
    description: str

    @property
    def code(self) -> str:
        return self.name.replace("-", "_")


KINDS = {kind.name: kind for kind in (
    Kind("bad-request", 400, "Bad request",
         "The request cannot be answered as sent: a query parameter or the body is malformed, of the wrong type or "
         "out of range. `detail` says what; `errors` lists each input at fault, with a JSON `pointer` into the "
         "body or the query `parameter`. Nothing was changed."),
    Kind("unauthorized", 401, "Unauthorized",
         "No bearer token, or not the right one. Send `Authorization: Bearer <CALSYNC_OPS_TOKEN>`."),
    Kind("forbidden", 403, "Forbidden",
         "The request was understood but is not allowed: an operator form whose CSRF token expired, or a signed "
         "link that is too old. Reload the page (or open a fresh link) and try again."),
    Kind("not-found", 404, "Not found",
         "Nothing answers at this URL, or the user, person, endpoint or delivery it names does not exist."),
    Kind("method-not-allowed", 405, "Method not allowed",
         "This URL exists but does not take this HTTP method; the `Allow` header lists the ones it takes."),
    Kind("payload-too-large", 413, "Payload too large", "The request body is larger than this route accepts."),
    Kind("unsupported-media-type", 415, "Unsupported media type", "The body is not in a format this route reads."),
    Kind("unprocessable", 422, "Nothing could be stored",
         "The body was well formed but every item in it was refused; `rejected` lists each with its reason."),
    Kind("service-unavailable", 503, "Service unavailable",
         "A dependency (MongoDB or Redis) does not answer; retry after the `Retry-After` seconds."),
    Kind("server-error", 500, "Internal server error",
         "calsync failed to answer; the failure is logged with the `request_id`. Retrying may work."),
)}
BY_STATUS = {kind.status: kind for kind in KINDS.values()}


class Problem(Exception):  # noqa: N818 - it is what it is called in RFC 9457
    """Raise to answer with a problem; ``kind`` names a ``KINDS`` entry (or give a bare status)."""

    def __init__(self, kind: str | int, detail: str, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None, **extensions):
        super().__init__(detail)
        self.kind = kind_of(kind)
        self.detail, self.errors, self.headers, self.extensions = detail, errors, headers or {}, extensions


def kind_of(kind: str | int) -> Kind:
    if isinstance(kind, int):
        return BY_STATUS.get(kind) or Kind(f"http-{kind}", kind, "Error", "")
    return KINDS[kind]


def type_uri(kind: Kind) -> str:
    """The kind's documentation URL, absolute (RFC 9457 recommends it), under the public URL."""
    base = ""
    if has_request_context():
        settings = current_app.extensions.get("calsync.settings")
        base = settings.public_url.rstrip("/") if settings is not None else request.host_url.rstrip("/")
    return f"{base}/problems/{kind.name}"


def body(kind: str | int | Kind, detail: str, errors: list[dict] | None = None, **extensions) -> dict:
    """The problem object (a dict)."""
    kind = kind if isinstance(kind, Kind) else kind_of(kind)
    found: dict = {"type": type_uri(kind), "title": kind.title, "status": kind.status, "detail": detail}
    if has_request_context():
        found["instance"] = request.path[:500]
    found["code"] = kind.code
    request_id = g.get("request_id") if has_request_context() else None
    if request_id:
        found["request_id"] = request_id
    if errors:
        found["errors"] = errors
    found.update(extensions)
    return found


def problem(kind: str | int | Kind, detail: str, errors: list[dict] | None = None,
            headers: dict[str, str] | None = None, **extensions) -> Response:
    """A ready ``application/problem+json`` response."""
    found = body(kind, detail, errors, **extensions)
    response = Response(json.dumps(found), status=found["status"], mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_exception(exc: Problem) -> Response:
    return problem(exc.kind, exc.detail, exc.errors, exc.headers, **exc.extensions)


def from_http(exc: HTTPException) -> Response:
    """werkzeug's HTTP error (404 of an unknown URL, 405, 413, a malformed body's 400) as a problem."""
    kind = BY_STATUS.get(exc.code or 500) or Kind(f"http-{exc.code}", exc.code or 500, exc.name, "")
    response = problem(kind, (exc.description or kind.title).rstrip("."))
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def for_api(path: str | None = None) -> bool:
    """Whether errors at this path are problem objects (the JSON APIs) rather than pages."""
    path = request.path if path is None else path
    return path.startswith(API_PREFIXES) or path in ("/api", "/ops/api")


def parameter(name: str, detail: str) -> dict:
    """One ``errors`` entry for a query parameter."""
    return {"parameter": name, "detail": detail}


def pointer(path: str, detail: str) -> dict:
    """One ``errors`` entry for a place in the JSON body (a JSON Pointer like ``/digest/time``)."""
    return {"pointer": path, "detail": detail}
