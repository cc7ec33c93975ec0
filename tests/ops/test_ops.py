import re
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import queues

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


def scrape(client, ops_headers, path="/ops/metrics") -> dict:
    """Every sample of a scrape as {(name, sorted labels): value}, parsed by prometheus-client's own parser."""
    response = client.get(path, headers=ops_headers)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


def test_metrics_are_prometheus_text_with_help_types_and_labels(client, ops_headers, population, redis_conn):
    dropped = (("reason", "client_state"), ("route", "changes"))
    before = scrape(client, ops_headers).get(("calsync_webhook_dropped_notifications_total", dropped), 0)
    forged = {"subscriptionId": "s-ok", "clientState": "forged", "changeType": "updated", "resource": "r"}
    client.post("/webhooks/graph", json={"value": [forged] * 4})  # the webhook counts what it drops

    text = client.get("/ops/metrics", headers=ops_headers).get_data(as_text=True)
    samples = scrape(client, ops_headers, "/metrics")

    assert "# HELP calsync_webhook_dropped_notifications_total " in text
    assert "# TYPE calsync_webhook_dropped_notifications_total counter" in text
    assert "# TYPE calsync_webhook_handling_seconds histogram" in text
    assert samples[("calsync_webhook_dropped_notifications_total", dropped)] == before + 4
    assert samples[("calsync_subscriptions_expired", ())] == 1
    assert samples[("calsync_subscriptions", (("status", "failing"),))] == 1
    assert samples[("calsync_users", (("status", "needs_reconnect"),))] == 1
    assert samples[("calsync_queue_jobs", (("queue", "sync"), ("state", "failed")))] == 0
    assert samples[("calsync_dependency_up", (("dependency", "redis"),))] == 1
    assert not [name for name, _ in samples if name.startswith("calsync_webhook_dropped_client")]  # a label now


def test_metrics_need_the_ops_token_on_both_paths(client):
    for path in ("/metrics", "/ops/metrics"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_recreate_subscription_enqueues_the_job_and_unknown_users_are_404(client, ops_headers, population, redis_conn):
    response = client.post("/ops/users/u-nosub/subscription", headers=ops_headers)

    assert response.status_code == 202
    job = queues.get_queue(queues.SUBSCRIPTIONS, redis_conn).jobs[0]
    assert job.func_name == queues.ENSURE_SUBSCRIPTION and job.args == ("u-nosub",)
    assert client.post("/ops/users/nobody/subscription", headers=ops_headers).status_code == 404


def csrf_in(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_browser_session_login_dashboard_and_csrf(client, population):
    login = csrf_in(client.get("/ops/login").get_data(as_text=True))
    assert client.post("/ops/login", data={"token": "nope", "csrf_token": login}).status_code == 401

    client.post("/ops/login", data={"token": "test-ops-token-0123456789abcdef", "csrf_token": login})
    page = client.get("/ops/").get_data(as_text=True)
    csrf = csrf_in(page)

    assert "late@contoso.com" in page and "Graph 503 serviceUnavailable" in page and "gone@contoso.com" in page
    assert client.post("/ops/queues/sync/requeue-failed", data={}).status_code == 403
    assert client.post("/ops/queues/sync/requeue-failed", data={"csrf_token": csrf}).status_code == 303


@pytest.fixture
def many(db):
    """Seven subscriptions, three sharing one expiry (the key's _id breaks the tie), owners u0..u6."""
    db.users.insert_many([{"_id": f"u{n}", "email": f"user{n}@contoso.com", "connection": {"status": "connected"}}
                          for n in range(7)])
    expiries = [NOW + timedelta(hours=h) for h in (1, 2, 2, 2, 3, 4, 5)]
    db.subscriptions.insert_many([
        {"_id": f"s{n}", "user_id": f"u{n}", "status": "failing" if n % 2 else "active", "expires_at": at,
         "failures": n % 2}
        for n, at in enumerate(expiries)])
    return [f"s{n}" for n in range(7)]


def listing(client, headers, **args):
    response = client.get("/ops/api/subscriptions", headers=headers, query_string=args)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_the_subscriptions_api_pages_forwards_and_back_by_expiry_then_id(client, ops_headers, many):
    pages, cursor = [], None
    while True:
        page = listing(client, ops_headers, limit=3, **({"cursor": cursor} if cursor else {}))
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    back = listing(client, ops_headers, limit=3, cursor=pages[2]["previous_cursor"])

    assert [[s["id"] for s in p["subscriptions"]] for p in pages] == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6"]]
    assert pages[0]["previous_cursor"] is None and pages[1]["previous_cursor"]
    assert [s["id"] for s in back["subscriptions"]] == ["s3", "s4", "s5"]
    assert [s["user_email"] for s in pages[0]["subscriptions"]] == ["user0@contoso.com", "user1@contoso.com",
                                                                    "user2@contoso.com"]


def test_going_back_to_the_start_shows_a_full_first_page(client, ops_headers, many):
    second = listing(client, ops_headers, limit=2, cursor=listing(client, ops_headers, limit=2)["next_cursor"])
    third = listing(client, ops_headers, limit=2, cursor=second["next_cursor"])

    first = listing(client, ops_headers, limit=2, cursor=listing(client, ops_headers, limit=3, cursor=third[
        "previous_cursor"])["previous_cursor"])

    assert [s["id"] for s in first["subscriptions"]] == ["s0", "s1"] and first["previous_cursor"] is None


def test_a_status_filter_pages_through_that_status_only(client, ops_headers, many):
    first = listing(client, ops_headers, status="failing", limit=2)
    rest = listing(client, ops_headers, status="failing", limit=2, cursor=first["next_cursor"])

    assert [s["id"] for s in first["subscriptions"] + rest["subscriptions"]] == ["s1", "s3", "s5"]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(("q", "found"), [
    ("user3@contoso.com", ["s3"]),
    ("USER3@Contoso.com ", ["s3"]),      # emails are stored lower-cased
    ("user", ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]),
    ("u5", ["s5"]),                      # a user id
    ("s6", ["s6"]),                      # a subscription id
    ("nobody@contoso.com", []),
    (".*", []),                          # never a regex
])
def test_search_finds_by_email_or_its_start_user_id_or_subscription_id(client, ops_headers, many, q, found):
    assert [s["id"] for s in listing(client, ops_headers, q=q)["subscriptions"]] == found


def test_search_is_bounded_and_says_so(client, ops_headers, many):
    page = listing(client, ops_headers, q="user", limit=2)
    failing = listing(client, ops_headers, q="user", status="failing")

    assert [s["id"] for s in page["subscriptions"]] == ["s0", "s1"] and page["truncated"] is True
    assert [s["id"] for s in failing["subscriptions"]] == ["s1", "s3", "s5"] and failing["truncated"] is False


@pytest.mark.parametrize("args", [{"cursor": "garbage"}, {"cursor": "W10"}, {"limit": "0"}, {"limit": "501"},
                                  {"limit": "x"}, {"status": "sleeping"}])
def test_a_bad_listing_query_is_a_400(client, ops_headers, many, args):
    response = client.get("/ops/api/subscriptions", headers=ops_headers, query_string=args)

    assert response.status_code == 400 and response.get_json()["code"] == "bad_request"


def test_health_lists_the_first_page_and_where_the_rest_is(client, ops_headers, many):
    body = client.get("/ops/api/health", headers=ops_headers).get_json()

    assert [s["id"] for s in body["subscriptions"]] == many and body["subscriptions_next_cursor"] is None


def test_the_dashboard_pages_and_searches(client, many):
    login = csrf_in(client.get("/ops/login").get_data(as_text=True))
    client.post("/ops/login", data={"token": "test-ops-token-0123456789abcdef", "csrf_token": login})

    first = client.get("/ops/?limit=2").get_data(as_text=True)
    following = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(following).get_data(as_text=True)
    found = client.get("/ops/?q=user4@contoso.com").get_data(as_text=True)

    assert "user0@contoso.com" in first and "user2@contoso.com" not in first and 'rel="prev"' not in first
    assert "user2@contoso.com" in second and 'rel="prev"' in second
    assert 'name="q"' in found and "user4@contoso.com" in found and "user0@contoso.com" not in found
    assert csrf_in(found)  # the action forms keep their CSRF token
