"""Rich-notification crypto: our certificate, decryption with HMAC-before-decrypt, and validationToken checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from service.cli import cli
from service.identity.jwks import SigningKeys
from service.subscriptions import certificate
from service.webhooks import rich
from tests.support.jwks import rsa_jwk, serving_jwks

CLIENT_ID = "5b7c1e8a-2f4d-4c6b-9a1e-7d3f8b2c6e40"
TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
AUTHORITY = "https://login.microsoftonline.com"


@pytest.fixture(scope="module")
def keypair(tmp_path_factory) -> certificate.KeyPair:
    directory = tmp_path_factory.mktemp("certs")
    return certificate.create_certificate(directory / "cert.pem", directory / "key.pem")


def encrypt(keypair: certificate.KeyPair, resource: dict) -> dict:
    """Encrypt as Graph documents it (independently of the code under test)."""
    key = os.urandom(32)
    public = keypair.private_key.public_key()
    oaep = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    data_key = public.encrypt(key, oaep)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(resource).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    data = encryptor.update(plain) + encryptor.finalize()
    return {
        "data": base64.b64encode(data).decode(),
        "dataSignature": base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode(),
        "dataKey": base64.b64encode(data_key).decode(),
        "encryptionCertificateId": keypair.certificate_id,
        "encryptionCertificateThumbprint": keypair.thumbprint,
    }


EVENT = {"@odata.type": "#microsoft.graph.event", "id": "AAMkAG1", "subject": "Planning",
         "lastModifiedDateTime": "2026-11-25T10:00:00Z", "type": "singleInstance"}


def test_decrypts_what_graph_encrypted(keypair):
    assert rich.decrypt(encrypt(keypair, EVENT), keypair) == EVENT


def flip(value: str, at: int = 5) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda e: {**e, "data": flip(e["data"])}, "signature"),
    (lambda e: {**e, "dataSignature": flip(e["dataSignature"])}, "signature"),
    (lambda e: {**e, "dataKey": flip(e["dataKey"])}, "data_key"),
    (lambda e: {**e, "encryptionCertificateId": "other", "encryptionCertificateThumbprint": "00"},
     "unknown_certificate"),
    (lambda e: {**e, "data": "***not base64***"}, "encrypted_shape"),
    (lambda e: {k: v for k, v in e.items() if k != "dataSignature"}, "encrypted_shape"),
])
def test_tampered_content_is_refused_before_decryption(keypair, mutate, reason):
    with pytest.raises(rich.RichError) as refused:
        rich.decrypt(mutate(encrypt(keypair, EVENT)), keypair)
    assert refused.value.reason == reason


def test_load_keypair_refuses_a_mismatched_key(tmp_path, make_settings):
    one = certificate.create_certificate(tmp_path / "a.pem", tmp_path / "a.key")
    certificate.create_certificate(tmp_path / "b.pem", tmp_path / "b.key")
    settings = make_settings(rich_cert_path=str(tmp_path / "a.pem"), rich_key_path=str(tmp_path / "a.key"))
    assert certificate.load_keypair(settings).thumbprint == one.thumbprint
    mismatched = settings.with_overrides(rich_key_path=str(tmp_path / "b.key"))
    with pytest.raises(ValueError, match="do not match"):
        certificate.load_keypair(mismatched)


def test_certs_create_writes_a_private_key_only_we_can_read(tmp_path):
    runner = CliRunner()
    env = {"CALSYNC_DATA_DIR": str(tmp_path)}
    result = runner.invoke(cli, ["certs", "create"], env=env)
    assert result.exit_code == 0, result.output
    key = tmp_path / "certs" / "rich-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "BEGIN CERTIFICATE" in (tmp_path / "certs" / "rich-cert.pem").read_text()
    again = runner.invoke(cli, ["certs", "create"], env=env)
    assert again.exit_code != 0 and "already exists" in again.output
    assert runner.invoke(cli, ["certs", "create", "--force"], env=env).exit_code == 0


# --- validation tokens ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signing():
    """The identity platform's key "k1", published at a loopback JWKS endpoint."""
    key, jwk = rsa_jwk("k1")
    with serving_jwks({"keys": [jwk]}) as endpoint:
        yield key, SigningKeys(endpoint.url, None, timeout=5)


def token(key, **overrides) -> str:
    now = int(time.time())
    claims = {"aud": CLIENT_ID, "iss": f"{AUTHORITY}/{TENANT}/v2.0", "iat": now, "nbf": now, "exp": now + 3600,
              "azp": rich.PUBLISHER_APP_ID, "tid": TENANT, "ver": "2.0", **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def validate(tokens, keys, tenants=frozenset({TENANT})):
    rich.validate_tokens(tokens, set(tenants), keys, CLIENT_ID, AUTHORITY)


def test_a_genuine_token_passes(signing):
    """A v2.0 token (``azp``) and a v1.0 one (``appid``, the sts.windows.net issuer) from Graph's publisher app
    each vouch for their tenant, and a batch from that tenant passes with either."""
    key, keys = signing
    v1 = token(key, iss=f"https://sts.windows.net/{TENANT}/", ver="1.0", azp=None, appid=rich.PUBLISHER_APP_ID)
    for genuine in (token(key), v1):
        assert rich._validate_token(genuine, keys, CLIENT_ID, AUTHORITY) == TENANT
        validate([genuine], keys)       # raises RichError on any refusal
        with pytest.raises(rich.RichError, match="tenant_not_covered"):
            validate([genuine], keys, {TENANT, "another-tenant"})   # it vouches for its own tenant only


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"aud": "someone-else"}, "token_audience"),
    ({"exp": int(time.time()) - 3600}, "token_expired"),
    ({"azp": "00000000-0000-0000-0000-000000000000"}, "token_publisher"),
    ({"iss": "https://login.microsoftonline.com/other-tenant/v2.0"}, "token_issuer"),
    ({"iss": "https://evil.example/84bd8158-6d4d-4958-8b9f-9d6445542f95/v2.0"}, "token_issuer"),
    ({"ver": "1.0"}, "token_publisher"),  # v1 tokens name the caller in appid
])
def test_tokens_with_wrong_claims_are_refused(signing, overrides, reason):
    key, keys = signing
    with pytest.raises(rich.RichError) as refused:
        validate([token(key, **overrides)], keys)
    assert refused.value.reason == reason


def test_forged_signatures_and_algorithms_are_refused(signing):
    key, keys = signing
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(rich.RichError, match="token_signature"):
        validate([token(forger)], keys)
    unsigned = jwt.encode({"aud": CLIENT_ID}, None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(rich.RichError, match="token_algorithm"):
        validate([unsigned], keys)
    hs = jwt.encode({"aud": CLIENT_ID}, "s" * 32, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(rich.RichError, match="token_algorithm"):
        validate([hs], keys)
    other_kid = jwt.encode({"aud": CLIENT_ID}, key, algorithm="RS256", headers={"kid": "nope"})
    with pytest.raises(rich.RichError, match="token_unknown_key"):
        validate([other_kid], keys)


def test_every_tenant_in_the_batch_needs_a_valid_token(signing):
    key, keys = signing
    with pytest.raises(rich.RichError, match="tenant_not_covered"):
        validate([token(key)], keys, {TENANT, "another-tenant"})
    with pytest.raises(rich.RichError, match="no_validation_tokens"):
        validate([], keys)
    with pytest.raises(rich.RichError, match="token_audience"):
        validate([token(key), token(key, aud="x")], keys)  # any bad token makes the batch suspicious


def test_a_token_from_a_rotated_key_is_accepted_once_the_keys_are_refetched():
    old, old_jwk = rsa_jwk("k1")
    new, new_jwk = rsa_jwk("k2")
    with serving_jwks({"keys": [old_jwk]}) as endpoint:
        keys = SigningKeys(endpoint.url, None, timeout=5, cooldown=0)
        validate([token(old)], keys)
        endpoint.jwks["keys"].append(new_jwk)

        validate([jwt.encode(jwt.decode(token(old), options={"verify_signature": False}), new, algorithm="RS256",
                             headers={"kid": "k2"})], keys)

    assert len(endpoint.fetches) == 2


def test_signing_keys_that_cannot_be_fetched_are_a_reason_not_an_exception(signing):
    key, _ = signing
    with serving_jwks({"keys": []}) as endpoint:
        endpoint.status = 503
        keys = SigningKeys(endpoint.url, None, timeout=5)

        with pytest.raises(rich.RichError) as refused:
            validate([token(key)], keys)

    assert refused.value.reason == "unavailable_signing_keys"
