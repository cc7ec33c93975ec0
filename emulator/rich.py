"""Rich notifications: resource data encrypted exactly as Graph documents it, and signed validationTokens."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from emulator.errors import bad_request

CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"


def load_certificate(encoded: object) -> x509.Certificate:
    """The subscription's encryptionCertificate (base64 DER, or PEM) with an RSA 2048..4096-bit key."""
    if not isinstance(encoded, str) or not encoded.strip() or len(encoded) > 20_000:
        raise bad_request("encryptionCertificate is required when includeResourceData is true.", "InvalidRequest")
    text = encoded.strip()
    try:
        if text.startswith("-----BEGIN"):
            cert = x509.load_pem_x509_certificate(text.encode())
        else:
            cert = x509.load_der_x509_certificate(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        message = "encryptionCertificate is not a valid base64-encoded certificate."
        raise bad_request(message, "InvalidRequest") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or not 2048 <= key.key_size <= 4096:
        raise bad_request("The encryption certificate key must be RSA, 2048 to 4096 bits.", "InvalidRequest")
    return cert


def thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Graph's thumbprint is SHA-1


def encrypt(cert: x509.Certificate, certificate_id: str, resource: dict) -> dict:
    """changeNotificationEncryptedContent for ``resource`` (a fresh 32-byte key per item)."""
    key = os.urandom(32)
    data_key = cert.public_key().encrypt(
        key, asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    )
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(resource, separators=(",", ":")).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    cipher_text = encryptor.update(plain) + encryptor.finalize()
    signature = hmac.new(key, cipher_text, hashlib.sha256).digest()
    return {
        "data": base64.b64encode(cipher_text).decode(),
        "dataSignature": base64.b64encode(signature).decode(),
        "dataKey": base64.b64encode(data_key).decode(),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": thumbprint(cert),
    }


def validation_claims(app_id: str, tenant_id: str, now: dt.datetime) -> dict:
    """Claims of a validationToken: issued to the app by Microsoft Graph Change Tracking, valid ~1 hour."""
    issued = int(now.timestamp())
    return {
        "aud": app_id,
        "iss": f"https://login.microsoftonline.com/{tenant_id}/v2.0",
        "iat": issued,
        "nbf": issued,
        "exp": issued + 3600,
        "aio": base64.b64encode(os.urandom(24)).decode(),
        "azp": CHANGE_TRACKING_APP_ID,
        "azpacr": "2",
        "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{CHANGE_TRACKING_APP_ID}")),
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{CHANGE_TRACKING_APP_ID}")),
        "tid": tenant_id,
        "uti": base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="),
        "ver": "2.0",
    }
