"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec v1).

A secret is ``whsec_`` + base64 of 32 random bytes. Each delivery attempt carries ``webhook-id`` (the event
id, the same on every retry, so receivers can deduplicate), ``webhook-timestamp`` (Unix seconds of this
attempt) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` once per live secret,
space-separated (after a rotation the old secret signs too, for 24 h).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("not a whsec_ secret")
    return base64.b64decode(secret[len(PREFIX):])


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(live_secrets: list[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in live_secrets),
    }
