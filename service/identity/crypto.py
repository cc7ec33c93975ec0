"""Token caches at rest: MultiFernet over CALSYNC_TOKEN_KEYS (the first key encrypts, any key decrypts).

Rotation is add-then-rewrite: put the new key first in CALSYNC_TOKEN_KEYS everywhere (old keys stay
listed so nothing breaks), run ``calsync rotate-keys``, then drop the old keys.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from service.config import Settings


class CacheUnreadable(Exception):  # noqa: N818 - reads better at the call sites than ...Error
    """A stored blob failed to decrypt: tampered with, truncated, or encrypted with a key we no longer hold."""


@lru_cache(maxsize=8)
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def cipher(settings: Settings) -> MultiFernet:
    """The MultiFernet for the configured keys (built once per key list)."""
    return _cipher(tuple(settings.token_keys))


def encrypt(settings: Settings, plaintext: str) -> str:
    """Encrypt with the first key; the result is ASCII, safe to store as a string."""
    return cipher(settings).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(settings: Settings, blob: str) -> str:
    """Decrypt with whichever configured key matches; raise CacheUnreadable otherwise."""
    try:
        return cipher(settings).decrypt(_as_bytes(blob)).decode("utf-8")
    except (InvalidToken, UnicodeError, TypeError, ValueError):
        raise CacheUnreadable("token cache cannot be decrypted with the configured keys") from None


def rotate(settings: Settings, blob: str) -> str:
    """Re-encrypt a blob under the first key (raise CacheUnreadable if no key opens it)."""
    try:
        return cipher(settings).rotate(_as_bytes(blob)).decode("ascii")
    except (InvalidToken, UnicodeError, TypeError, ValueError):
        raise CacheUnreadable("token cache cannot be decrypted with the configured keys") from None


def _as_bytes(blob: str | bytes) -> bytes:
    if isinstance(blob, bytes):
        return blob
    if not isinstance(blob, str):
        raise TypeError("blob must be str")
    return blob.encode("ascii")
