"""The identity platform's signing keys: one mechanism for every JWKS use (id tokens, rich-notification tokens).

PyJWT's ``PyJWKClient`` fetches a key set, keeps it for ``LIFESPAN_SECONDS``, and when a token names a
kid it does not hold (keys rotate) fetches again, at most once per ``REFETCH_COOLDOWN_SECONDS``, so a
stream of made-up kids cannot make us hammer the endpoint. It is thread-safe and fetches with urllib, so
it gets an ``ssl.SSLContext`` trusting what our requests session trusts (``service.runtime``).
"""

from __future__ import annotations

import logging
import ssl
import threading

import jwt

log = logging.getLogger(__name__)

LIFESPAN_SECONDS = 3600
REFETCH_COOLDOWN_SECONDS = 30
USER_AGENT = "calsync/0.1"


class SigningKeysUnavailable(Exception):  # noqa: N818 - the condition, like the library's own names
    """The key set could not be fetched or read; the message names the failure's type only."""


class UnknownSigningKey(Exception):  # noqa: N818
    """No RS256 key with the token's kid, even after the refetch the cooldown allows."""


class SigningKeys:
    """The keys published at one JWKS URL."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None, timeout: float,
                 cooldown: float = REFETCH_COOLDOWN_SECONDS):
        """``cooldown``: the least time between two fetches caused by unknown kids."""
        self.url = url
        try:
            self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=LIFESPAN_SECONDS, timeout=timeout,
                                           ssl_context=ssl_context, cooldown_duration=cooldown,
                                           headers={"User-Agent": USER_AGENT})
        except jwt.PyJWKClientError:  # not an http(s) URL
            raise SigningKeysUnavailable("unusable JWKS URL") from None

    def rsa_key(self, kid: object):
        """The RS256 public key for ``kid``; UnknownSigningKey or SigningKeysUnavailable otherwise."""
        if not isinstance(kid, str) or not kid:
            raise UnknownSigningKey("no kid")
        try:
            key = self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("signing keys at %s could not be fetched (%s)", self.url, type(exc.__cause__).__name__)
            raise SigningKeysUnavailable(type(exc.__cause__).__name__) from None
        except (ValueError, jwt.PyJWKSetError) as exc:  # not JSON, or no usable key in it
            log.warning("signing keys at %s could not be read (%s)", self.url, type(exc).__name__)
            raise SigningKeysUnavailable(type(exc).__name__) from None
        except jwt.PyJWKClientError:
            raise UnknownSigningKey(kid) from None
        if key.key_type != "RSA":
            raise UnknownSigningKey(kid)
        return key.key


class KeySets:
    """One SigningKeys per JWKS URL for the whole process, so every check of a URL shares one cache."""

    def __init__(self, ssl_context: ssl.SSLContext | None, timeout: float,
                 cooldown: float = REFETCH_COOLDOWN_SECONDS):
        self._ssl_context, self._timeout, self._cooldown = ssl_context, timeout, cooldown
        self._lock = threading.Lock()
        self._at: dict[str, SigningKeys] = {}

    def at(self, url: str) -> SigningKeys:
        """The keys published at ``url``."""
        with self._lock:
            keys = self._at.get(url)
            if keys is None:
                keys = self._at[url] = SigningKeys(url, self._ssl_context, self._timeout, self._cooldown)
            return keys
