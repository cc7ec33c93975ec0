"""Rich notifications: our encryption certificate, validationTokens (JWT) checks, and decrypting resource data.

Algorithm (Microsoft's "change notifications with resource data" page, checked against the .NET SDK's
test vector): RSA-OAEP(SHA-1) unwraps a 32-byte key; HMAC-SHA256(key, ciphertext) must equal
``dataSignature`` (compared in constant time) *before* anything is decrypted; AES-256-CBC with the
key's first 16 bytes as IV and PKCS7 padding gives the resource JSON.

A validation token must be RS256-signed by a key in the identity platform's JWKS, unexpired, for our
client id, issued for the notification's tenant (either documented issuer form), by Graph's change
notification publisher. Failures raise ``RichError`` with a short reason (a stats key), never the data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging

import jwt
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from service.identity.jwks import SigningKeys, SigningKeysUnavailable, UnknownSigningKey
from service.subscriptions.certificate import KeyPair

log = logging.getLogger(__name__)

PUBLISHER_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"  # Microsoft Graph Change Tracking
LEEWAY_SECONDS = 120
MAX_ENCRYPTED_BYTES = 2_000_000


class RichError(ValueError):
    """A rich notification failed validation or decryption; ``reason`` is safe to log and count."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- decryption ------------------------------------------------------------------------------

def decrypt(encrypted: dict, keypair: KeyPair) -> dict:
    """The resource JSON of one ``encryptedContent``; RichError if it is not ours, tampered or garbled."""
    if not isinstance(encrypted, dict):
        raise RichError("encrypted_shape")
    certificate_id = encrypted.get("encryptionCertificateId")
    thumbprint = encrypted.get("encryptionCertificateThumbprint")
    if certificate_id != keypair.certificate_id and (
            not isinstance(thumbprint, str) or thumbprint.upper() != keypair.thumbprint):
        raise RichError("unknown_certificate")
    data = _b64(encrypted.get("data"))
    wrapped_key = _b64(encrypted.get("dataKey"))
    signature = _b64(encrypted.get("dataSignature"))
    try:
        key = keypair.private_key.decrypt(wrapped_key, asym_padding.OAEP(
            mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))  # noqa: S303
    except ValueError:
        raise RichError("data_key") from None
    if len(key) != 32:
        raise RichError("data_key")
    expected = hmac.new(key, data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise RichError("signature")
    if not data or len(data) % 16:
        raise RichError("ciphertext")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        resource = json.loads(plain.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RichError("plaintext") from None
    if not isinstance(resource, dict):
        raise RichError("plaintext")
    return resource


def _b64(value: object) -> bytes:
    if not isinstance(value, str) or not value or len(value) > MAX_ENCRYPTED_BYTES:
        raise RichError("encrypted_shape")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RichError("encrypted_shape") from None


# --- validation tokens -----------------------------------------------------------------------

def validate_tokens(tokens: list[str], tenant_ids: set[str], keys: SigningKeys, client_id: str,
                    authority_host: str) -> None:
    """Every token must be valid, and every tenant in the batch covered by one; else RichError."""
    if not tokens:
        raise RichError("no_validation_tokens")
    covered = set()
    for token in tokens:
        covered.add(_validate_token(token, keys, client_id, authority_host))
    if not tenant_ids <= covered:
        raise RichError("tenant_not_covered")


def _validate_token(token: str, keys: SigningKeys, client_id: str, authority_host: str) -> str:
    if not isinstance(token, str) or len(token) > 16_384:
        raise RichError("token_shape")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise RichError("token_shape") from None
    if header.get("alg") != "RS256":
        raise RichError("token_algorithm")
    key = _signing_key(keys, header.get("kid"))
    options = {"require": ["exp", "iss", "aud"], "verify_iat": False}
    try:
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=client_id, options=options,
                            leeway=LEEWAY_SECONDS)
    except jwt.ExpiredSignatureError:
        raise RichError("token_expired") from None
    except jwt.InvalidAudienceError:
        raise RichError("token_audience") from None
    except jwt.PyJWTError:
        raise RichError("token_signature") from None
    tenant = claims.get("tid")
    if not isinstance(tenant, str) or claims["iss"] not in _issuers(tenant, authority_host):
        raise RichError("token_issuer")
    caller = claims.get("appid") if claims.get("ver") == "1.0" else claims.get("azp")
    if caller != PUBLISHER_APP_ID:
        raise RichError("token_publisher")
    return tenant


def _issuers(tenant: str, authority_host: str) -> set[str]:
    return {f"https://sts.windows.net/{tenant}/", f"{authority_host.rstrip('/')}/{tenant}/v2.0",
            f"https://login.microsoftonline.com/{tenant}/v2.0"}


def _signing_key(keys: SigningKeys, kid: object):
    try:
        return keys.rsa_key(kid)
    except UnknownSigningKey:
        raise RichError("token_unknown_key") from None
    except SigningKeysUnavailable:
        raise RichError("unavailable_signing_keys") from None


def jwks_url(settings) -> str:
    """Where Microsoft publishes the keys that sign validation tokens (its "validate tokens" page)."""
    return f"{settings.authority_host.rstrip('/')}/common/discovery/v2.0/keys"
