"""Registering, listing, pausing and removing endpoints (ops API, /ops pages, ``calsync webhooks``), and the
URLs calsync refuses to call."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from service import cli as cli_module
from service import outbox
from service.app import create_app
from service.identity import crypto
from service.outbound import delivery, http
from service.outbound import endpoints as outbound_endpoints
from service.runtime import Runtime
from service.store import outbound as store
from service.store import utcnow


@pytest.mark.parametrize("body, message", [
    ({"url": "ftp://files.example.com/in"}, "http:// or https://"),
    ({"url": "javascript:alert(1)"}, "http:// or https://"),
    ({"url": "not a url"}, "http(s) URL"),
    ({"url": "https://"}, "no host"),
    ({"url": "https://user:pw@hooks.example.com/"}, "user name or password"),
    ({"url": "http://127.0.0.1:99999/"}, "not a valid URL"),
    ({"url": "https://h" + "o" * 3000 + ".example.com/"}, "at most 2048"),
    ({"url": 42}, "http(s) URL"),
    ({"url": "https://does-not-exist.invalid/hook"}, "does not resolve"),
    ({"url": "SELF/webhooks/graph"}, "calsync itself"),
    ({"url": "SELF"}, "calsync itself"),
    ({"url": "RECEIVER", "event_types": ["meetings.exploded"]}, "unknown event type"),
    ({"url": "RECEIVER", "event_types": []}, "non-empty list"),
    ({"url": "RECEIVER", "event_types": "digest.sent,nope"}, "unknown event type"),
    ({"url": "RECEIVER", "description": "x" * 501}, "description"),
])
def test_bad_endpoints_get_a_clear_400(client, ops_headers, rt, receiver, body, message):
    body = dict(body)
    if body["url"] == "RECEIVER":
        body["url"] = receiver.url
    elif isinstance(body["url"], str) and body["url"].startswith("SELF"):
        body["url"] = rt.settings.public_url + body["url"][4:]

    answer = client.post("/ops/api/webhooks", headers=ops_headers, json=body)

    assert answer.status_code == 400
    assert message in answer.get_json()["detail"]
    assert store.endpoints(rt.db) == []


@pytest.mark.parametrize("body", ["not json", "[]", '"x"', "null"])
def test_a_body_that_is_not_an_object_is_a_400(client, ops_headers, body):
    answer = client.post("/ops/api/webhooks", headers={**ops_headers, "Content-Type": "application/json"}, data=body)
    assert answer.status_code == 400


def test_the_ops_api_needs_the_operator_token(client):
    assert client.post("/ops/api/webhooks", json={"url": "https://example.com/"}).status_code == 401
    assert client.get("/ops/api/webhooks").status_code == 401


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://localhost:8080/", "http://[::1]/", "http://10.1.2.3/", "http://192.168.0.10/",
    "http://172.16.5.4/", "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/",
    "http://100.64.0.1/", "http://224.0.0.1/", "http://[fd00::1]/", "http://[fe80::1]/",
])
def test_loopback_private_and_reserved_addresses_are_refused_unless_allowed(url):
    with pytest.raises(http.RefusedUrl, match="loopback, private or reserved"):
        http.check(url, "https://calsync.example.com", allow_private=False)
    parts, address = http.check(url, "https://calsync.example.com", allow_private=True)
    assert parts.hostname and address


def _resolving(table: dict[str, list[str]]):
    return lambda host, port, **_: [(2, 1, 6, "", (address, port)) for address in table[host]]


def test_a_public_address_is_allowed(monkeypatch):
    monkeypatch.setattr(http.socket, "getaddrinfo", _resolving({"hooks.example.com": ["93.184.215.14"],
                                                                "calsync.example.com": ["93.184.215.99"]}))
    parts, address = http.check("https://hooks.example.com/in", "https://calsync.example.com", allow_private=False)
    assert address == "93.184.215.14" and parts.hostname == "hooks.example.com"


def test_a_name_that_resolves_to_any_private_address_is_refused(monkeypatch):
    monkeypatch.setattr(http.socket, "getaddrinfo", _resolving({"rebind.example.com": ["93.184.215.14", "10.0.0.7"],
                                                                "calsync.example.com": ["93.184.215.99"]}))
    with pytest.raises(http.RefusedUrl):
        http.check("https://rebind.example.com/in", "https://calsync.example.com", allow_private=False)


def test_without_the_setting_a_loopback_receiver_is_refused_at_registration_and_at_delivery(
        make_settings, db, redis_conn, receiver, ops_headers):
    strict = Runtime(make_settings(), db=db, redis_conn=redis_conn)
    client = create_app(runtime=strict).test_client()
    store.insert_endpoint(db, "ep_old", receiver.url, ["digest.sent"], "", "unused", utcnow())  # DNS changed since

    answer = client.post("/ops/api/webhooks", headers=ops_headers, json={"url": receiver.url})
    outbox.digest_sent(db, redis_conn, "u1", "2026-07-01", utcnow(), 1)
    outcome = delivery.attempt(db, redis_conn, strict.settings, strict.ssl_context,
                               db.outbound_deliveries.find_one({})["_id"])

    assert answer.status_code == 400 and "loopback" in answer.get_json()["detail"]
    assert outcome == "failed" and receiver.requests == []
    (logged,) = store.get_endpoint(db, "ep_old").attempts
    assert logged["error"] == "refused: url resolves to a loopback, private or reserved address"


def test_pause_resume_remove_and_the_log_through_the_api(client, ops_headers, endpoint):
    endpoint_id, _ = endpoint

    paused = client.post(f"/ops/api/webhooks/{endpoint_id}/pause", headers=ops_headers)
    resumed = client.post(f"/ops/api/webhooks/{endpoint_id}/resume", headers=ops_headers)
    deliveries = client.get(f"/ops/api/webhooks/{endpoint_id}/deliveries?status=failed", headers=ops_headers)
    bad_status = client.get(f"/ops/api/webhooks/{endpoint_id}/deliveries?status=lost", headers=ops_headers)
    bad_limit = client.get(f"/ops/api/webhooks/{endpoint_id}/deliveries?limit=0", headers=ops_headers)
    bad_range = client.post(f"/ops/api/webhooks/{endpoint_id}/replay", headers=ops_headers, json={"since": "soon"})
    unknown = client.post(f"/ops/api/webhooks/{endpoint_id}/replay", headers=ops_headers,
                          json={"delivery_id": "dlv_nope"})
    removed = client.delete(f"/ops/api/webhooks/{endpoint_id}", headers=ops_headers)
    gone = client.get(f"/ops/api/webhooks/{endpoint_id}", headers=ops_headers)

    assert paused.get_json()["status"] == "paused" and paused.get_json()["paused_reason"] == "paused by an operator"
    assert resumed.get_json()["status"] == "active"
    assert deliveries.get_json() == {"items": []}
    assert (bad_status.status_code, bad_limit.status_code, bad_range.status_code) == (400, 400, 400)
    assert unknown.status_code == 404 and removed.status_code == 204 and gone.status_code == 404


def test_the_ops_pages_show_endpoints_attempts_and_paused_ones(client, ops_headers, endpoint, rt):
    endpoint_id, secret = endpoint
    client.post(f"/ops/api/webhooks/{endpoint_id}/pause", headers=ops_headers)
    html = {**ops_headers, "Accept": "text/html"}

    listing = client.get("/ops/webhooks", headers=html)
    detail = client.get(f"/ops/webhooks/{endpoint_id}", headers=html)
    dashboard = client.get("/ops/", headers=html)

    assert listing.status_code == 200 and detail.status_code == 200
    assert "paused by an operator" in listing.get_data(as_text=True)
    assert "Attempts" in detail.get_data(as_text=True) and "Replay range" in detail.get_data(as_text=True)
    assert secret not in listing.get_data(as_text=True) + detail.get_data(as_text=True)
    assert "/ops/webhooks" in dashboard.get_data(as_text=True)
    assert "Outbound webhooks paused" in dashboard.get_data(as_text=True)


def test_the_calsync_webhooks_command(rt, receiver, monkeypatch):
    monkeypatch.setattr("service.cli.webhooks.runtime_from_env", lambda: rt)
    runner = CliRunner()

    added = runner.invoke(cli_module.cli, ["webhooks", "add", receiver.url, "--event", "digest.sent",
                                           "--description", "product"])
    endpoint_id = added.output.split()[1]
    listed = runner.invoke(cli_module.cli, ["webhooks", "list"])
    paused = runner.invoke(cli_module.cli, ["webhooks", "pause", endpoint_id])
    shown = runner.invoke(cli_module.cli, ["webhooks", "show", endpoint_id])
    rotated = runner.invoke(cli_module.cli, ["webhooks", "rotate-secret", endpoint_id])
    replayed = runner.invoke(cli_module.cli, ["webhooks", "replay", endpoint_id, "--since", "2020-01-01"])
    refused = runner.invoke(cli_module.cli, ["webhooks", "add", "ftp://x"])
    removed = runner.invoke(cli_module.cli, ["webhooks", "remove", endpoint_id])
    missing = runner.invoke(cli_module.cli, ["webhooks", "pause", endpoint_id])

    assert added.exit_code == 0 and "whsec_" in added.output and endpoint_id.startswith("ep_")
    assert endpoint_id in listed.output and "digest.sent" in listed.output
    assert paused.exit_code == 0 and '"status": "paused"' in shown.output and "whsec_" not in shown.output
    assert rotated.exit_code == 0 and "whsec_" in rotated.output
    assert replayed.exit_code == 0 and "0 delivery(ies) queued" in replayed.output
    assert refused.exit_code == 1 and "http:// or https://" in refused.output
    assert removed.exit_code == 0 and missing.exit_code == 1


def test_rotate_keys_re_encrypts_endpoint_secrets_so_old_keys_can_go(rt, make_settings, receiver, run_jobs):
    created = outbound_endpoints.register(rt.db, rt.settings, receiver.url, ["digest.sent"])
    new_key = Fernet.generate_key().decode()
    both = make_settings(token_keys=(new_key, *rt.settings.token_keys), outbound_allow_private=True)
    only_new = make_settings(token_keys=(new_key,), outbound_allow_private=True)

    assert outbound_endpoints.rotate_keys(rt.db, both) == (1, 0)
    (secret,) = store.get_endpoint(rt.db, created.endpoint.id).secrets
    assert crypto.decrypt(only_new, secret.ciphertext) == created.secret
    outbox.digest_sent(rt.db, rt.redis, "u1", "2026-07-01", utcnow(), 2)
    row = rt.db.outbound_deliveries.find_one({})
    assert delivery.attempt(rt.db, rt.redis, only_new, rt.ssl_context, row["_id"]) == "delivered"
    (got,) = receiver.wait_for(1)
    assert Webhook(created.secret).verify(got.body, got.headers)["type"] == "digest.sent"


def test_another_name_for_calsyncs_own_private_address_is_itself_but_a_shared_public_one_is_not(monkeypatch):
    monkeypatch.setattr(http.socket, "getaddrinfo", _resolving({
        "calsync.internal": ["10.0.0.5"], "alias.internal": ["10.0.0.5"], "calsync.example.com": ["93.184.215.99"],
        "product.example.com": ["93.184.215.99"]}))

    with pytest.raises(http.RefusedUrl, match="calsync itself"):
        http.check("http://alias.internal:8000/hook", "http://calsync.internal:8000", allow_private=True)
    http.check("http://alias.internal:9000/hook", "http://calsync.internal:8000", allow_private=True)  # another port
    parts, address = http.check("https://product.example.com/hook", "https://calsync.example.com", allow_private=False)
    assert address == "93.184.215.99"   # a load balancer shared with another service is that service


def test_odd_numbers_and_far_dates_in_the_ops_api_are_a_400(client, ops_headers, endpoint):
    """The ops API reads client input through service.inputs like every route: `²` passes str.isdigit but
    not int(), and year 9999 or 0001 with an offset overflows on conversion to UTC (both were 500s)."""
    endpoint_id, _ = endpoint
    answers = [client.get(f"/ops/api/webhooks/{endpoint_id}/deliveries?limit=%C2%B2", headers=ops_headers)]
    for since, until in (("9999-12-31T23:00:00-14:00", "9999-12-31T23:59:00-14:00"),
                         ("0001-01-01T00:00:00+14:00", "0001-01-02T00:00:00+14:00")):
        answers.append(client.post(f"/ops/api/webhooks/{endpoint_id}/replay", headers=ops_headers,
                                   json={"since": since, "until": until}))

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert all(a.get_json()["code"] == "bad_request" for a in answers)
