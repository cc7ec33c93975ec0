"""What every request goes through: its id, its log line and metrics, and the security headers.

Request ids: a well-formed ``X-Request-Id`` from the caller (a proxy or load balancer) is kept, otherwise
one is made; either way it is bound to the log context for the request and sent back in the response.

Security headers are set here rather than with flask-talisman: talisman (last release 2023) forces an
HTTPS redirect and rewrites the session cookie flags by default, both of which the app already decides
from ``CALSYNC_PUBLIC_URL``, and it replaces per-route headers (the webhooks' sandbox CSP) unless every
route is decorated; the policy below is a dozen lines that keep what a route set for itself.

Behind a proxy, ``CALSYNC_PROXY_HOPS=N`` believes the last N proxies' X-Forwarded-For/-Proto/-Host
(werkzeug's ProxyFix), so ``request.is_secure`` (and with it HSTS) follows the client's scheme. Unset,
the headers are ignored: anyone could send them.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from urllib.parse import urlsplit

from flask import Flask, g, request, session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from service import logs, metrics
from service.config import Settings

log = logging.getLogger("calsync.http")

REQUEST_ID = "X-Request-Id"
WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
HSTS = "max-age=31536000; includeSubDomains"


def content_security_policy(settings: Settings) -> str:
    """No inline script or style anywhere; forms post to us, and the connect form's redirect goes to the
    identity platform (browsers apply ``form-action`` to the redirect after a POST as well)."""
    authority = urlsplit(settings.authority_host)
    return "; ".join([
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        "object-src 'none'", "base-uri 'none'", f"form-action 'self' {authority.scheme}://{authority.netloc}",
        "frame-ancestors 'none'",
    ])


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building the cookie signer for a request that carries no
    session cookie (every Graph webhook, API clients): Flask then opens the same empty session, after
    constructing an itsdangerous serializer that was 6% of a webhook POST's time under a profiler."""

    def open_session(self, app: Flask, request):
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask, settings: Settings) -> None:
    app.session_interface = CookieSessions()
    if settings.proxy_hops:
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    policy = content_security_policy(settings)

    @app.before_request
    def _begin():
        g.request_id = request_id_for(request.headers.get(REQUEST_ID, ""))
        # Graph's webhooks carry no session: their hot path does not open one.
        user_id = (request.view_args or {}).get("user_id") or (
            session.get("user_id") if request.blueprint != "webhooks" else None)
        logs.bind(request_id=g.request_id, user_id=user_id if isinstance(user_id, str) else None)
        g.observed = True
        g.started = time.monotonic()
        metrics.HTTP_IN_FLIGHT.inc()

    @app.after_request
    def _finish(response):
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID] = request_id
        _security_headers(response, policy)
        started = g.pop("started", None)
        if started is not None:
            record_request(request.endpoint or "unmatched", request.method, response.status_code,
                           time.monotonic() - started, request.path)
        return response

    @app.teardown_request
    def _end(_exc):
        if g.pop("observed", None):
            metrics.HTTP_IN_FLIGHT.dec()
        logs.clear()


def request_id_for(given: str) -> str:
    """The caller's X-Request-Id when well formed, else a new one."""
    return given if WELL_FORMED_ID.fullmatch(given) else uuid.uuid4().hex


def record_request(endpoint: str, method: str, status: int, elapsed: float, path: str) -> None:
    """A finished request's metrics and its one access line (the path only: query strings carry
    validation tokens, cursors and signed links)."""
    metrics.HTTP_REQUESTS.labels(endpoint, method, str(status)).inc()
    metrics.HTTP_SECONDS.labels(endpoint).observe(elapsed)
    if log.isEnabledFor(logging.INFO):
        path = path[:200]
        log.info("%s %s %d %.1fms", method, path, status, elapsed * 1000,
                 extra={"method": method, "path": path, "status": status, "duration_ms": round(elapsed * 1000, 1)})


def security_defaults(mimetype: str, secure: bool, policy: str) -> list[tuple[str, str]]:
    """The headers every response carries unless its route set its own."""
    defaults = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                ("Referrer-Policy", "no-referrer"),
                ("Content-Security-Policy",
                 policy if mimetype == "text/html" else "default-src 'none'; frame-ancestors 'none'")]
    if secure:
        defaults.append(("Strict-Transport-Security", HSTS))
    return defaults


def _security_headers(response, policy: str) -> None:
    for name, value in security_defaults(response.mimetype, request.is_secure, policy):
        response.headers.setdefault(name, value)
