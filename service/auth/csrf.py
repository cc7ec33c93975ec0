"""CSRF tokens for our own forms: a random token in the signed session, echoed in a hidden field."""

from __future__ import annotations

import hmac
import secrets

from flask import session

SESSION_KEY = "csrf"
FIELD = "csrf_token"


def csrf_token() -> str:
    """The session's token, created on first use (templates call this)."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def valid(submitted: object) -> bool:
    """True if ``submitted`` matches the session's token (constant-time)."""
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str) or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())
