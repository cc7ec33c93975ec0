"""Picking a signing key out of the identity platform's JWKS (id tokens and rich-notification tokens)."""

from __future__ import annotations

import jwt


def rsa_key(jwks: dict, kid: object):
    """The RS256 public key with ``kid`` in ``jwks``, or None when absent or unusable (keys rotate daily)."""
    for candidate in jwks.get("keys") or []:
        if isinstance(candidate, dict) and candidate.get("kid") == kid and candidate.get("kty") == "RSA":
            try:
                return jwt.PyJWK(candidate, algorithm="RS256").key
            except jwt.PyJWTError:
                return None
    return None
