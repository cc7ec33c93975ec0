"""The front door (``/``), the documentation of each problem type (``/problems/<name>``), and what every URL
answers when it fails: a friendly page for people, a problem object (RFC 9457) under the JSON APIs."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template, request, session
from werkzeug.exceptions import BadHost, HTTPException, InternalServerError

from service.store import users
from service.web import problems

log = logging.getLogger(__name__)
bp = Blueprint("home", __name__, template_folder="templates")

PAGE_TITLES = {
    400: ("This request could not be read", "Something in the address or the form was not as expected."),
    403: ("You cannot open this page", "You may need to sign in, or open a newer link."),
    404: ("Page not found", "There is nothing at this address. It may have moved, or the link may be mistyped."),
    405: ("This page cannot do that", "The page exists, but not for this kind of request."),
    413: ("That was too large", "The form or upload is larger than calsync accepts."),
}


def _signed_in():
    user_id = session.get("user_id")
    if not isinstance(user_id, str):
        return None
    try:
        return users.get(current_app.extensions["calsync"].db, user_id)
    except Exception as exc:  # the front door still opens when MongoDB does not answer
        log.warning("home: could not read the signed-in user (%s)", type(exc).__name__)
        return None


@bp.get("/")
def index():
    """What calsync is, how to connect, and where operators go."""
    return render_template("auth/home.html", user=_signed_in())


@bp.get("/problems/<name>")
def problem_type(name: str):
    """The human documentation a problem's ``type`` URL points at."""
    kind = problems.KINDS.get(name)
    if kind is None:
        return _page(404)
    example = {**problems.body(kind, "what went wrong with this request, in words"),
               "instance": "/api/users/ana@contoso.com/meetings", "request_id": "3f9c2a7e5b8d4c1fa0e6b2d9c8a7f615"}
    return render_template("auth/problem_type.html", kind=kind, example=example,
                           parts=kind.description.split("`"))


def _page(status: int, detail: str | None = None):
    title, text = PAGE_TITLES.get(status, ("Something went wrong", "calsync could not answer this request."))
    return render_template("auth/not_found.html" if status == 404 else "auth/error.html", title=title,
                           text=detail or text, detail=detail or text, status=status, path=request.path[:200],
                           user=_signed_in(), back_home=True), status


@bp.app_errorhandler(problems.Problem)
def _problem(exc: problems.Problem):
    if problems.for_api():
        return problems.from_exception(exc)
    return _page(exc.kind.status, exc.detail)


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    """werkzeug's errors (an unknown URL, a wrong method, a body too large): a problem under the APIs, a page
    for people; Graph's webhook routes keep werkzeug's plain answers."""
    if request.path.startswith("/webhooks/") or exc.code is None or isinstance(exc, BadHost):
        return exc   # BadHost: no URL adapter could be built, so no page with links can be rendered either
    if problems.for_api():
        return problems.from_http(exc)
    response = _page(exc.code)
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")]
    return response[0], response[1], headers


@bp.app_errorhandler(InternalServerError)
def _server_error(exc: InternalServerError):
    """An unexpected failure (already logged with its traceback by Flask): no traceback to the client."""
    if problems.for_api():
        return problems.problem("server-error", "calsync failed to answer this request")
    return render_template("auth/error.html", title="Something went wrong on our side",
                           detail="calsync could not answer this request. Please try again in a minute.",
                           status=500, back_home=True), 500
