"""Id-token validation: MSAL 1.38+ no longer checks the id token, and the connect flow relies on it.

Checks the RS256 signature against the authority's JWKS (read through our trusted HTTP session),
the issuer (the discovery ``issuer`` with ``{tenantid}`` filled in), the audience (our client id),
``exp``/``nbf`` with five minutes of clock skew, and the nonce MSAL sent (SHA-256 of the flow's nonce).
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
from service.identity.jwks import rsa_key
from service.identity.msal_app import discovery_url

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 300
METADATA_TTL_SECONDS = 3600

_lock = threading.Lock()
_metadata: dict[str, tuple[float, dict, dict]] = {}  # discovery URL -> (fetched at, discovery, jwks)


class IdTokenInvalid(Exception):  # noqa: N818 - "invalid" is the condition, not a failure of ours
    """The id token must not be trusted; the message says which check failed (never the token)."""


def nonce_hash(nonce: str) -> str:
    """What MSAL sends as ``nonce`` for a flow's nonce (OIDC nonce hashing)."""
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


def validate(settings: Settings, http: requests.Session, raw: str, nonce: str, now: float | None = None) -> dict:
    """Return the verified claims of ``raw`` or raise IdTokenInvalid."""
    if not isinstance(raw, str) or raw.count(".") != 2:
        raise IdTokenInvalid("malformed id token")
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError:
        raise IdTokenInvalid("malformed id token header") from None
    if header.get("alg") != "RS256":
        raise IdTokenInvalid("unexpected signing algorithm")
    discovery, key = _signing_key(settings, http, str(header.get("kid") or ""))
    claims = _decode(raw, key, settings.client_id, now)
    tenant_id = str(claims.get("tid") or "")
    expected_issuer = str(discovery.get("issuer") or "").replace("{tenantid}", tenant_id)
    if not tenant_id or claims.get("iss") != expected_issuer:
        raise IdTokenInvalid("unexpected issuer")
    if not hmac.compare_digest(str(claims.get("nonce") or ""), nonce_hash(nonce)):
        raise IdTokenInvalid("nonce mismatch")
    if not claims.get("oid"):
        raise IdTokenInvalid("no object id")
    return claims


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


def _signing_key(settings: Settings, http: requests.Session, kid: str):
    """The JWKS key for ``kid``; an unknown kid triggers one refetch (keys rotate)."""
    url = discovery_url(settings)
    for refresh in (False, True):
        discovery, jwks = _load(settings, http, url, refresh)
        key = rsa_key(jwks, kid)
        if key is not None:
            return discovery, key
    raise IdTokenInvalid("unknown signing key")


def _load(settings: Settings, http: requests.Session, url: str, refresh: bool) -> tuple[dict, dict]:
    with _lock:
        cached = _metadata.get(url)
    if cached and not refresh and time.monotonic() - cached[0] < METADATA_TTL_SECONDS:
        return cached[1], cached[2]
    timeout = settings.http_timeout
    try:
        discovery = http.get(url, timeout=timeout)
        discovery.raise_for_status()
        document = discovery.json()
        jwks = http.get(document["jwks_uri"], timeout=timeout)
        jwks.raise_for_status()
        keys = jwks.json()
    except (ValueError, KeyError, TypeError):  # not JSON, or no jwks_uri: nothing to verify against
        raise IdTokenInvalid("the authority's signing keys could not be read") from None
    if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
        raise IdTokenInvalid("the authority's signing keys could not be read")
    with _lock:
        _metadata[url] = (time.monotonic(), document, keys)
    log.info("loaded the authority's signing keys (%d key(s))", len(keys.get("keys", [])))
    return document, keys
