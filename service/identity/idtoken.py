"""Id-token validation: MSAL 1.38+ no longer checks the id token, and the connect flow relies on it.

Checks the RS256 signature against the authority's signing keys (``service.identity.jwks``, at the
discovery document's ``jwks_uri``), the issuer (the discovery ``issuer`` with ``{tenantid}`` filled in),
the audience (our client id), ``exp``/``nbf`` with five minutes of clock skew, and the nonce MSAL sent
(SHA-256 of the flow's nonce).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time

import jwt
import requests

from service.config import Settings
from service.identity.jwks import KeySets, SigningKeysUnavailable, UnknownSigningKey
from service.identity.msal_app import discovery_url

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 300
METADATA_TTL_SECONDS = 3600


class IdTokenInvalid(Exception):  # noqa: N818 - "invalid" is the condition, not a failure of ours
    """The id token must not be trusted; the message says which check failed (never the token)."""


def nonce_hash(nonce: str) -> str:
    """What MSAL sends as ``nonce`` for a flow's nonce (OIDC nonce hashing)."""
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


class IdTokens:
    """Checks id tokens for one process: the authority's discovery document kept an hour, keys from ``keys``."""

    def __init__(self, settings: Settings, http: requests.Session, keys: KeySets):
        self.settings, self._http, self._keys = settings, http, keys
        self._lock = threading.Lock()
        self._discovery: tuple[float, dict] | None = None  # (read at, document)

    def validate(self, raw: str, nonce: str, now: float | None = None) -> dict:
        """Return the verified claims of ``raw`` or raise IdTokenInvalid."""
        if not isinstance(raw, str) or raw.count(".") != 2:
            raise IdTokenInvalid("malformed id token")
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.PyJWTError:
            raise IdTokenInvalid("malformed id token header") from None
        if header.get("alg") != "RS256":
            raise IdTokenInvalid("unexpected signing algorithm")
        discovery = self._read_discovery()
        try:
            key = self._keys.at(str(discovery["jwks_uri"])).rsa_key(header.get("kid"))
        except UnknownSigningKey:
            raise IdTokenInvalid("unknown signing key") from None
        except SigningKeysUnavailable:
            raise IdTokenInvalid("the authority's signing keys could not be read") from None
        claims = _decode(raw, key, self.settings.client_id, now)
        tenant_id = str(claims.get("tid") or "")
        expected_issuer = str(discovery.get("issuer") or "").replace("{tenantid}", tenant_id)
        if not tenant_id or claims.get("iss") != expected_issuer:
            raise IdTokenInvalid("unexpected issuer")
        if not hmac.compare_digest(str(claims.get("nonce") or "").encode(), nonce_hash(nonce).encode()):
            raise IdTokenInvalid("nonce mismatch")
        if not claims.get("oid"):
            raise IdTokenInvalid("no object id")
        return claims

    def _read_discovery(self) -> dict:
        """The authority's OpenID configuration (issuer, jwks_uri), read at most once an hour."""
        with self._lock:
            cached = self._discovery
        if cached and time.monotonic() - cached[0] < METADATA_TTL_SECONDS:
            return cached[1]
        try:
            response = self._http.get(discovery_url(self.settings), timeout=self.settings.http_timeout)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError):
            raise IdTokenInvalid("the authority's configuration could not be read") from None
        if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
            raise IdTokenInvalid("the authority's configuration could not be read")
        with self._lock:
            self._discovery = (time.monotonic(), document)
        return document


def _decode(raw: str, key, client_id: str, now: float | None) -> dict:
    options = {"require": ["exp", "aud", "iss"], "verify_iss": False}
    try:
        if now is None:
            return jwt.decode(raw, key, algorithms=["RS256"], audience=client_id, leeway=LEEWAY_SECONDS,
                              options=options)
        claims = jwt.decode(raw, key, algorithms=["RS256"], audience=client_id,
                            options={**options, "verify_exp": False, "verify_nbf": False, "verify_iat": False})
    except jwt.ExpiredSignatureError:
        raise IdTokenInvalid("id token expired") from None
    except jwt.ImmatureSignatureError:
        raise IdTokenInvalid("id token not yet valid") from None
    except jwt.InvalidAudienceError:
        raise IdTokenInvalid("wrong audience") from None
    except jwt.PyJWTError as exc:
        raise IdTokenInvalid(f"id token rejected ({type(exc).__name__})") from None
    if not (claims["exp"] + LEEWAY_SECONDS > now >= claims.get("nbf", now) - LEEWAY_SECONDS):
        raise IdTokenInvalid("id token outside its validity period")
    return claims
