"""Rich notifications end to end: the emulator encrypts with our certificate and signs validationTokens."""

from __future__ import annotations

import base64
import copy
import datetime as dt

import pytest
import requests
from rq import Queue

from service import queues
from service.store import subscriptions as store
from service.subscriptions import certificate
from tests.support.connect import connect_user, emulated_user


@pytest.fixture
def rich_stack(make_stack, tmp_path):
    """Like the root ``stack`` fixture, with rich notifications switched on and a fresh certificate."""
    cert, key = tmp_path / "rich-cert.pem", tmp_path / "rich-key.pem"
    certificate.create_certificate(cert, key)
    with make_stack(rich_notifications=True, rich_cert_path=str(cert), rich_key_path=str(key)) as served:
        yield served


@pytest.fixture
def alice(rich_stack):
    user_id = connect_user(rich_stack, emulated_user(rich_stack, mail="alice@contoso.com")["id"])
    rich_stack.run_jobs()
    rich_stack.emulator.control.clear_deliveries()
    return user_id


def event_body(subject: str) -> dict:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=2)
    return {"subject": subject, "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}


def stats(stack, pattern: str) -> dict[str, int]:
    return {k.decode(): int(stack.runtime.redis.get(k)) for k in stack.runtime.redis.keys(pattern)}


def queued(stack, name: str = "sync") -> list[str]:
    return [job.func_name for job in Queue(name, connection=stack.runtime.redis).jobs]


def delivered_body(stack) -> dict:
    stack.emulator.control.wait_idle(timeout=20)
    (delivery,) = [d for d in stack.emulator.control.deliveries("change") if d["outcome"] == "delivered"]
    return delivery["body"]


def test_rich_subscription_is_created_with_our_certificate(rich_stack, alice):
    subscription = store.for_user(rich_stack.runtime.db, alice)
    assert subscription.rich is True
    (remote,) = [s for s in rich_stack.emulator.control.subscriptions() if s["status"] == "active"]
    assert remote["includeResourceData"] is True
    assert "$select=" in remote["resource"]
    keypair = certificate.load_keypair(rich_stack.settings)
    assert remote["encryptionCertificateId"] == keypair.certificate_id
    assert remote["encryptionCertificate"] == keypair.certificate_b64


def test_a_change_to_a_stored_event_is_applied_from_the_notification_without_a_sync(rich_stack, alice):
    control = rich_stack.emulator.control
    created = control.create_event(alice, event_body("Rich planning"))
    delivered_body(rich_stack)
    rich_stack.run_jobs()   # new to us: its calendar is unknown, so the delta sync stores it
    assert stats(rich_stack, "calsync:stats:webhook:rich:*") == {"calsync:stats:webhook:rich:fallback:item": 1}
    assert rich_stack.runtime.db.events.find_one({"user_id": alice, "subject": "Rich planning"})["calendar_id"]
    rich_stack.runtime.redis.delete(*rich_stack.runtime.redis.keys("calsync:stats:webhook:rich:*"))
    control.clear_deliveries()
    graph_calls = len(control.graph_requests())

    control.update_event(alice, created["id"], {"subject": "Rich planning (moved)"})
    body = delivered_body(rich_stack)
    assert body["validationTokens"] and body["value"][0]["encryptedContent"]
    assert queued(rich_stack)[0] == queues.APPLY_RICH and queues.SYNC_USER not in queued(rich_stack)
    rich_stack.run_jobs()

    stored = rich_stack.runtime.db.events.find_one({"user_id": alice, "graph_id": created["id"]})
    assert stored["subject"] == "Rich planning (moved)" and stored["calendar_id"]
    assert stats(rich_stack, "calsync:stats:webhook:rich:*") == {"calsync:stats:webhook:rich:applied": 1}
    assert [r for r in control.graph_requests()[graph_calls:] if "calendarView" in r.get("path", "")] == []


def replay(stack, body: dict) -> None:
    response = requests.post(f"{stack.url}/webhooks/graph", json=body, timeout=5)
    assert response.status_code == 202  # the sender never learns the validation outcome


def test_tampered_data_is_refused_and_falls_back_to_a_sync(rich_stack, alice):
    rich_stack.emulator.control.create_event(alice, event_body("Tamper me"))
    body = copy.deepcopy(delivered_body(rich_stack))
    rich_stack.runtime.redis.flushdb()  # forget the genuine delivery's jobs
    encrypted = body["value"][0]["encryptedContent"]
    raw = bytearray(base64.b64decode(encrypted["data"]))
    raw[-1] ^= 0x01
    encrypted["data"] = base64.b64encode(bytes(raw)).decode()
    replay(rich_stack, body)
    rich_stack.run_jobs()
    assert stats(rich_stack, "calsync:stats:webhook:dropped:rich_*") == {
        "calsync:stats:webhook:dropped:rich_signature": 1}
    assert stats(rich_stack, "calsync:stats:webhook:rich:*") == {"calsync:stats:webhook:rich:fallback:item": 1}


@pytest.mark.parametrize(("forge", "reason"), [
    ("wrong_audience", "token_audience"),
    ("forged_signature", "token_signature"),
])
def test_forged_or_wrong_audience_tokens_are_refused(rich_stack, alice, forge, reason):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    rich_stack.emulator.control.create_event(alice, event_body("Token check"))
    body = copy.deepcopy(delivered_body(rich_stack))
    rich_stack.runtime.redis.flushdb()
    (token,) = body["validationTokens"]
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    if forge == "wrong_audience":  # genuinely signed by the identity platform, but for Graph, not for us
        body["validationTokens"] = [rich_stack.emulator.control.token(user_id=alice)]
    else:
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        body["validationTokens"] = [jwt.encode(claims, forger, algorithm="RS256", headers={"kid": header["kid"]})]
    replay(rich_stack, body)
    rich_stack.run_jobs()
    assert stats(rich_stack, "calsync:stats:webhook:rich:fallback:*") == {
        f"calsync:stats:webhook:rich:fallback:{reason}": 1}
    assert "calsync:stats:webhook:rich:applied" not in stats(rich_stack, "calsync:stats:webhook:rich:*")
