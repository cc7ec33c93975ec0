"""CSRF protection for every browser form: Flask-WTF's CSRFProtect, on for every POST unless exempted here.

Forms carry ``{{ csrf_token() }}`` in a hidden ``csrf_token`` field. A request without a valid one is
refused with 400 before its view runs (a page in the blueprint's own style where it has one). Exempt,
because no browser session authorises them: the Graph webhooks (Graph calls them; clientState and
validation tokens decide), the JSON API (a bearer token, which a browser never sends by itself) and the
digest settings and unsubscribe forms, authorised by the signed link token ``t`` they carry (it names
the user, cannot be forged, and RFC 8058's one-click POST from a mail provider has no session). The
ops pages answer browsers (a session) and scripts (a bearer token) on the same URLs, so their blueprint
is exempt from the default check and calls ``csrf.protect()`` for session requests itself.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFError, CSRFProtect

__all__ = ["CSRFError", "csrf", "init_app"]

csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    """Protect ``app``'s forms."""
    app.config.update(
        WTF_CSRF_TIME_LIMIT=None,   # a token lives as long as the session, as before (the session is signed)
        # The strict check wants a same-origin Referer on HTTPS, but our pages send Referrer-Policy:
        # no-referrer (the sign-in callback URL must not leak), so browsers send none; the token suffices.
        WTF_CSRF_SSL_STRICT=False,
    )
    csrf.init_app(app)
