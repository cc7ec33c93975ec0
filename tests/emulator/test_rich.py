"""Rich notifications, decrypted here with an independent implementation of Microsoft's documented algorithm."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from tests.support.emulated import event_body, iso

CHANGE_TRACKING = "0bf30f3b-4a52-48df-9a82-234910c4a086"


def make_cert(bits: int = 2048) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "calsync rich test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return key, cert


def decrypt(key: rsa.RSAPrivateKey, content: dict) -> dict:
    """Microsoft's steps: RSA-OAEP-SHA1 data key, HMAC-SHA256 over the ciphertext bytes, AES-CBC IV=key[:16]."""
    symmetric = key.decrypt(base64.b64decode(content["dataKey"]),
                            padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))  # noqa: S303
    assert len(symmetric) == 32
    cipher_bytes = base64.b64decode(content["data"])
    expected = base64.b64encode(hmac.new(symmetric, cipher_bytes, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(expected, content["dataSignature"])
    decryptor = Cipher(algorithms.AES(symmetric), modes.CBC(symmetric[:16])).decryptor()
    padded = decryptor.update(cipher_bytes) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    return json.loads(unpadder.update(padded) + unpadder.finalize())


def test_rich_notifications_decrypt_and_carry_valid_tokens(world, receiver, emu):
    key, cert = make_cert()
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    resource = f"users/{world.ada['id']}/events?$select=subject,start,end,isCancelled"
    too_long = world.ada_graph.post("/subscriptions", {
        "changeType": "created,updated", "notificationUrl": f"{receiver.url}/notify", "resource": resource,
        "expirationDateTime": iso(1441), "includeResourceData": True, "encryptionCertificate": der,
        "encryptionCertificateId": "cert-1"})
    assert too_long.status_code == 400
    sub = world.ada_graph.post("/subscriptions", {
        "changeType": "created,updated", "notificationUrl": f"{receiver.url}/notify", "resource": resource,
        "expirationDateTime": iso(1400), "includeResourceData": True, "encryptionCertificate": der,
        "encryptionCertificateId": "cert-1", "clientState": "rich"})
    assert sub.status_code == 201, sub.text
    created = emu.control.create_event(world.ada["id"], event_body(
        "Secret plans", "2030-03-04T09:00:00", "2030-03-04T10:00:00", body={"contentType": "text", "content": "no"}))
    emu.control.wait_idle()
    (post,) = [p["body"] for p in receiver.posts if p["path"] == "/notify"]
    (note,) = post["value"]
    content = note["encryptedContent"]
    assert content["encryptionCertificateId"] == "cert-1"
    assert content["encryptionCertificateThumbprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    data = decrypt(key, content)
    assert data["id"] == created["id"] and data["subject"] == "Secret plans"
    assert data["start"] == created["start"] and data["isCancelled"] is False
    assert "body" not in data and "attendees" not in data  # only the $select'ed properties
    assert note["resourceData"]["id"] == created["id"] and note["clientState"] == "rich"

    (token,) = post["validationTokens"]
    session = requests.Session()
    session.trust_env = False
    jwks = session.get(f"{emu.base_url}/common/discovery/v2.0/keys", verify=emu.ca_bundle, timeout=5).json()
    kid = jwt.get_unverified_header(token)["kid"]
    public = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
    tenant = world.tenant["id"]
    from service.config import DEV_CLIENT_ID

    claims = jwt.decode(token, public, algorithms=["RS256"], audience=DEV_CLIENT_ID,
                        issuer=f"https://login.microsoftonline.com/{tenant}/v2.0")
    assert claims["azp"] == CHANGE_TRACKING and claims["ver"] == "2.0" and claims["tid"] == tenant
    assert 3000 < claims["exp"] - claims["iat"] <= 3600


def test_rich_subscription_needs_select_and_a_usable_certificate(world, receiver):
    _, small = make_cert(1024)
    base = {"changeType": "created", "notificationUrl": f"{receiver.url}/notify", "expirationDateTime": iso(600),
            "includeResourceData": True, "encryptionCertificateId": "c"}
    no_select = world.ada_graph.post("/subscriptions", base | {
        "resource": "me/events", "encryptionCertificate": base64.b64encode(
            small.public_bytes(serialization.Encoding.DER)).decode()})
    assert no_select.status_code == 400
    weak = world.ada_graph.post("/subscriptions", base | {
        "resource": "me/events?$select=subject", "encryptionCertificate": base64.b64encode(
            small.public_bytes(serialization.Encoding.DER)).decode()})
    assert weak.status_code == 400 and "2048" in weak.json()["error"]["message"]
    garbage = world.ada_graph.post("/subscriptions", base | {"resource": "me/events?$select=subject",
                                                              "encryptionCertificate": "!!!"})
    assert garbage.status_code == 400
