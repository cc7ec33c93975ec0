"""The app's certificate credential: a new key pair and self-signed certificate for ``calsync rotate-keys
--new-client-certificate``.

Rotation without downtime (Entra keeps several keyCredentials on one app registration): 1) make a new
certificate; 2) upload its public half (``.cer``) to the app registration; 3) deploy with
``CALSYNC_CLIENT_CERTIFICATES=new.pem,old.pem`` (tokens are asked with the new one; while Entra refuses it,
with the old one); 4) remove the old certificate from the registration and from the setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

VALID_DAYS = 365


@dataclass(frozen=True)
class NewCertificate:
    pem_path: Path           # private key + certificate: CALSYNC_CLIENT_CERTIFICATES names this one
    public_path: Path        # the certificate alone, to upload to the app registration
    sha1_thumbprint: str     # hex, as the Entra admin center lists it
    not_after: datetime


def make_certificate(path: Path, common_name: str = "calsync", now: datetime | None = None) -> NewCertificate:
    """Write a new 2048-bit RSA key and a self-signed certificate for it (``path``, mode 0600) and the public
    certificate beside it (``path`` with ``.cer``)."""
    now = now or datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=VALID_DAYS)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem + cert_pem)
    public = path.with_suffix(".cer")
    public.write_bytes(cert_pem)
    return NewCertificate(path, public, cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - Entra lists SHA-1
                          cert.not_valid_after_utc)
