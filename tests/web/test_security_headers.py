"""Security headers on every response, a CSP that needs no inline script or style, HSTS only over https
(X-Forwarded-Proto believed only with CALSYNC_PROXY_HOPS), and session cookies' flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.app import create_app
from service.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
EMAIL_TEMPLATES = {"digest.html", "prep.html", "attendee.html"}   # mail (and the macro both use), never served


def make_client(make_settings, db, redis_conn, **overrides):
    app = create_app(runtime=Runtime(make_settings(**overrides), db=db, redis_conn=redis_conn))
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def client(make_settings, db, redis_conn):
    return make_client(make_settings, db, redis_conn)


def test_html_pages_carry_a_strict_csp_and_no_framing(client):
    response = client.get("/connect")

    policy = response.headers["Content-Security-Policy"]
    assert response.mimetype == "text/html"
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert "form-action 'self' https://login.microsoftonline.com" in policy   # the sign-in redirect after POST
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers      # plain http: no HSTS


@pytest.mark.parametrize("path", ["/ops/login", "/healthz", "/digest/settings", "/static/ops.css", "/nowhere"])
def test_every_response_is_nosniff_and_unframeable(client, path):
    with client.get(path) as response:   # a static file's body is a file: close it
        headers = response.headers

    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_the_webhook_keeps_its_own_sandbox_policy(client):
    response = client.get("/webhooks/graph?validationToken=abc")

    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_hsts_only_over_https_and_forwarded_proto_only_behind_a_configured_proxy(make_settings, db, redis_conn):
    direct = make_client(make_settings, db, redis_conn)
    proxied = make_client(make_settings, db, redis_conn, proxy_hops=1)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}

    assert "Strict-Transport-Security" not in direct.get("/connect", headers=forwarded).headers   # not believed
    assert proxied.get("/connect", headers=forwarded).headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in proxied.get("/connect").headers
    assert direct.get("/connect", base_url="https://calsync.example").headers["Strict-Transport-Security"]


def test_the_session_cookie_is_httponly_lax_and_secure_over_https(make_settings, db, redis_conn):
    plain = make_client(make_settings, db, redis_conn).get("/connect").headers.get("Set-Cookie", "")
    secure = make_client(make_settings, db, redis_conn, public_url="https://calsync.example").get(
        "/connect", base_url="https://calsync.example").headers["Set-Cookie"]

    assert "HttpOnly" in secure and "SameSite=Lax" in secure and "Secure" in secure
    assert "Secure" not in plain and "HttpOnly" in plain


def test_no_served_template_has_inline_script_or_style():
    """So the CSP needs no 'unsafe-inline' and no hashes: script and style come from /static."""
    offending = []
    for path in sorted((ROOT / "service").rglob("templates/**/*.html")):
        if path.name in EMAIL_TEMPLATES:
            continue
        text = path.read_text()
        if re.search(r"<script(?![^>]*\ssrc=)", text) or "<style" in text or re.search(r"\sstyle=", text) \
                or re.search(r"\son[a-z]+=", text) or "javascript:" in text:
            offending.append(str(path.relative_to(ROOT)))
    assert offending == []
