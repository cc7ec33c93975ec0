import re
from datetime import UTC, datetime, timedelta

import pytest

from service.workers import queues

NOW = datetime.now(UTC)


@pytest.fixture
def population(db):
    db.users.insert_many([
        {"_id": "u-ok", "email": "ok@contoso.com", "connection": {"status": "connected"},
         "sync": {"error_count": 0}},
        {"_id": "u-late", "email": "late@contoso.com", "connection": {"status": "connected"},
         "sync": {"error_count": 2}},
        {"_id": "u-gone", "email": "gone@contoso.com",
         "connection": {"status": "needs_reconnect", "reason": "invalid_grant", "since": NOW}},
        {"_id": "u-nosub", "email": "nosub@contoso.com", "connection": {"status": "connected"},
         "subscription_missing_since": NOW},   # connected; its subscription was never made
    ])
    db.subscriptions.insert_many([
        {"_id": "s-ok", "user_id": "u-ok", "status": "active", "expires_at": NOW + timedelta(days=6), "failures": 0},
        {"_id": "s-late", "user_id": "u-late", "status": "failing", "expires_at": NOW + timedelta(hours=2),
         "failures": 3, "last_error": "Graph 503 serviceUnavailable"},
        {"_id": "s-gone", "user_id": "u-gone", "status": "active", "expires_at": NOW - timedelta(hours=1),
         "failures": 0},
    ])


def test_operator_endpoints_require_the_token(client):
    assert client.get("/ops/api/health").status_code == 401
    assert client.get("/ops/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/ops/queues/sync/requeue-failed").status_code == 401
    assert client.get("/ops/", headers={"Accept": "text/html"}).status_code == 302


def test_health_shows_expiry_failures_and_users_needing_reconsent(client, ops_headers, population):
    body = client.get("/ops/api/health", headers=ops_headers).get_json()

    by_id = {s["id"]: s for s in body["subscriptions"]}
    assert [s["id"] for s in body["subscriptions"]] == ["s-gone", "s-late", "s-ok"]  # soonest expiry first
    assert by_id["s-late"]["failures"] == 3 and by_id["s-late"]["last_error"] == "Graph 503 serviceUnavailable"
    assert by_id["s-gone"]["connection_status"] == "needs_reconnect"
    [reconsent] = body["needs_reconnect"]
    assert (reconsent["user_id"], reconsent["reason"]) == ("u-gone", "invalid_grant")
    assert reconsent["since"].endswith("Z")
    assert body["connected_without_subscription"] == [{"user_id": "u-nosub", "email": "nosub@contoso.com"}]
    assert body["counts"]["subscriptions_failing"] == 1
    assert body["counts"]["subscriptions_expiring_soon"] == 2
    assert body["counts"]["subscriptions_expired"] == 1
    assert body["counts"]["users_with_sync_errors"] == 1


def _fail(job_id):
    raise RuntimeError(f"boom {job_id}")


def test_queue_health_counts_failed_jobs_and_requeues_them(client, ops_headers, redis_conn, rt, run_jobs):
    queues.enqueue(redis_conn, queues.DIGEST, _fail, "x", retry=None)
    run_jobs()

    before = client.get("/ops/api/health", headers=ops_headers).get_json()["queues"]
    requeued = client.post("/ops/queues/digest/requeue-failed", headers=ops_headers)
    after = client.get("/ops/api/health", headers=ops_headers).get_json()["queues"]

    assert {q["queue"]: q["failed"] for q in before}["digest"] == 1
    assert requeued.status_code == 202 and requeued.get_json()["requeued"] == 1
    assert {q["queue"]: (q["failed"], q["queued"]) for q in after}["digest"] == (0, 1)


def test_metrics_are_prometheus_text(client, ops_headers, population, redis_conn):
    redis_conn.hincrby("calsync:stats:webhook:dropped", "client_state_mismatch", 4)

    text = client.get("/ops/metrics", headers=ops_headers).get_data(as_text=True)

    assert "calsync_subscriptions_expired 1\n" in text
    assert 'calsync_queue_jobs{queue="sync",state="failed"} 0' in text
    assert 'calsync_webhook_dropped{key="client_state_mismatch"} 4' in text


def test_recreate_subscription_enqueues_the_job_and_unknown_users_are_404(client, ops_headers, population, redis_conn):
    response = client.post("/ops/users/u-nosub/subscription", headers=ops_headers)

    assert response.status_code == 202
    job = queues.get_queue(queues.SUBSCRIPTIONS, redis_conn).jobs[0]
    assert job.func_name == queues.ENSURE_SUBSCRIPTION and job.args == ("u-nosub",)
    assert client.post("/ops/users/nobody/subscription", headers=ops_headers).status_code == 404


def test_browser_session_login_dashboard_and_csrf(client, population):
    assert client.post("/ops/login", data={"token": "nope"}).status_code == 401

    client.post("/ops/login", data={"token": "test-ops-token-0123456789abcdef"})
    page = client.get("/ops/").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    assert "late@contoso.com" in page and "Graph 503 serviceUnavailable" in page and "gone@contoso.com" in page
    assert client.post("/ops/queues/sync/requeue-failed", data={}).status_code == 403
    assert client.post("/ops/queues/sync/requeue-failed", data={"csrf": csrf}).status_code == 302
