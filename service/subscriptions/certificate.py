"""Our certificate for rich notifications: Graph encrypts resource data with its public key.

``calsync certs create`` writes a self-signed RSA certificate and its key; subscriptions send the
certificate (``encryptionCertificate``) and the webhook's jobs decrypt with the key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from service.config import Settings


@dataclass(frozen=True)
class KeyPair:
    certificate_b64: str       # base64 DER, as Graph's encryptionCertificate wants it
    certificate_id: str        # our encryptionCertificateId: the SHA-1 thumbprint, upper-case hex
    thumbprint: str
    private_key: rsa.RSAPrivateKey


def default_paths(settings: Settings) -> tuple[Path, Path]:
    cert = Path(settings.rich_cert_path) if settings.rich_cert_path else settings.path("certs", "rich-cert.pem")
    key = Path(settings.rich_key_path) if settings.rich_key_path else settings.path("certs", "rich-key.pem")
    return cert, key


def create_certificate(cert_path: Path, key_path: Path, days: int = 365,
                       common_name: str = "calsync rich notifications") -> KeyPair:
    """Write a self-signed RSA 2048 certificate and its private key (mode 0600)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return _keypair(certificate, key)


def load_keypair(settings: Settings) -> KeyPair:
    """Our certificate and key from CALSYNC_RICH_CERT / CALSYNC_RICH_KEY (or the data directory)."""
    cert_path, key_path = default_paths(settings)
    return _load(str(cert_path), str(key_path), cert_path.stat().st_mtime_ns, key_path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load(cert_path: str, key_path: str, _cert_mtime: int, _key_mtime: int) -> KeyPair:
    certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or not 2048 <= key.key_size <= 4096:
        raise ValueError("the rich-notification key must be RSA with 2048 to 4096 bits")
    if key.public_key().public_numbers() != certificate.public_key().public_numbers():
        raise ValueError("the rich-notification certificate and key do not match")
    return _keypair(certificate, key)


def _keypair(certificate: x509.Certificate, key: rsa.RSAPrivateKey) -> KeyPair:
    der = certificate.public_bytes(serialization.Encoding.DER)
    thumbprint = hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - the documented thumbprint, not security
    return KeyPair(base64.b64encode(der).decode(), thumbprint, thumbprint, key)
