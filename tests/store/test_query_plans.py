"""Every hot query the sweeps, the webhook and the sync send is answered by an index scan on a real server.

The queries are the ones the code really sends: a command listener records them while each function
runs, then the server is asked to ``explain`` each one. ``pytest -s`` prints the plans.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pymongo
import pytest

from service.digest import prep
from service.digest import tick as digest_jobs
from service.store import calendars, events, exclusions, init_db, ops, people, users, utcnow
from service.store import subscriptions as subscription_store
from service.store.records import Subscription
from service.subscriptions import sweep as subscription_jobs
from service.sync import sweeps
from tests.support.factories import add_event, add_user, attendee
from tests.support.plans import Recorder, explain, stages


def graph_event(graph_id: str, start) -> dict:
    """An event as Graph's delta lists it, changed now."""
    end = start + timedelta(minutes=30)
    return {"id": graph_id, "subject": "Changed", "lastModifiedDateTime": utcnow().isoformat(), "changeKey": "ck2",
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}


@pytest.fixture
def populated(db, rt, mongodb_uri):
    now = utcnow()
    for n in range(120):
        add_user(db, user_id=f"u{n}", email=f"u{n}@contoso.com")
        calendars.upsert_listed(db, f"u{n}", [{"calendar_id": f"c{n}", "name": "Calendar", "owner_email": None,
                                              "is_default": True, "is_own": True}], now)
        calendars.save_cursor(db, f"u{n}", f"c{n}", "https://graph/delta", now - timedelta(days=9), now, now)
        subscription_store.replace_for_user(db, Subscription(id=f"s{n}", user_id=f"u{n}", tenant_id="t",
                                                             client_state="x", expires_at=now + timedelta(hours=n)))
    users.mark_subscription_missing(db, "u7", now - timedelta(hours=1))
    people.create(db, {"emails": ["ana@contoso.com"], "primary_email": "ana@contoso.com"})
    for n in range(0, 120, 4):   # meetings every few minutes over the next two hours, and long ago
        for start in (now + timedelta(minutes=n), now - timedelta(days=n + 1)):
            add_event(db, f"u{n}", f"e{n}-{start:%j}", start, start + timedelta(minutes=30),
                      attendees=[attendee("ana@contoso.com")])
    return now


@pytest.mark.wire
def test_the_hot_queries_use_an_index(populated, rt, mongodb_uri):
    recorder = Recorder()
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True, event_listeners=[recorder])
    db = client.get_default_database()
    now = populated
    calls = {
        "digest tick": lambda: digest_jobs.due_users(db, rt.settings, now),
        "prep tick": lambda: prep.due_preps(db, now + timedelta(minutes=30)),
        "reconcile sweep": lambda: sweeps.reconcile(db, rt.redis, rt.settings, now),
        "window roll": lambda: sweeps.window_roll(db, rt.redis, rt.settings, now),
        "renewal sweep": lambda: subscription_jobs.plan_renewals(db, now, 1_440),
        "subscription repair": lambda: subscription_jobs.repair_lost_subscriptions(db, rt.redis, now),
        "webhook fallback": lambda: subscription_store.get_many(db, ["s1", "s2"]),
        "sync tombstones": lambda: events._tombstones(db, "u1", ["a", "b"], now),
        "sync stored versions": lambda: events.apply_changes(db, "u0", [graph_event(f"e0-{now:%j}", now)], now),
        "sync's calendars of": lambda: events.calendars_of(db, "u4", [f"e4-{now:%j}", "b"]),
        "sync exclusions": lambda: exclusions.for_user(db, "u1"),
        "copies by iCalUId": lambda: events.by_ical_uids(db, "u4", ["uid-a", "uid-b"]),
        "digest events": lambda: events.in_window(db, "u1", now, now + timedelta(days=1)),
        "directory": lambda: people.by_emails(db, ["ana@contoso.com"]),
        "user's calendars": lambda: calendars.for_user(db, "u1"),
        "metrics gauges": lambda: ops.gauge_counts(db, now, timedelta(hours=24)),   # every scrape
    }
    plans, metadata = [], []
    for name, call in calls.items():
        recorder.commands.clear()
        call()
        assert recorder.commands, f"{name} sent no query"
        for command in recorder.commands:
            if next(iter(command)) == "count" and not command.get("query"):
                # estimated_document_count: MongoDB answers it from collection metadata (SecantusDB's
                # explain calls every count a COLLSCAN), so it is checked as that command, not by plan.
                metadata.append((name, command["count"]))
                continue
            plan = explain(db, command)
            collection = command.get(next(iter(command)))
            plans.append((name, collection, plan))
    client.close()

    for name, collection, plan in plans:
        print(f"{name:22} {collection:14} " + " <- ".join(f"{s}({i})" if i else s for s, i in plan))
    scans = [(name, collection) for name, collection, plan in plans if any(s == "COLLSCAN" for s, _ in plan)]
    assert scans == []
    # Unhinted equality lookups: the planner picks the index that bounds both keys (service/store/events.py).
    chosen = {name: {i for _, i in plan if i} for name, collection, plan in plans if collection == "events"}
    assert chosen["sync stored versions"] == chosen["sync's calendars of"] == {events.BY_USER_AND_ID}
    assert chosen["copies by iCalUId"] == {events.BY_USER_AND_ICAL_UID}
    assert metadata == [("metrics gauges", "events")]


# The size, 100,000, with CALSYNC_TEST_SCALE=full (about 4 minutes here); the default suite uses
# 10,000, enough for every plan to show whether it scans (a plan does not change with the count).
SUBSCRIPTIONS = 100_000 if os.environ.get("CALSYNC_TEST_SCALE") == "full" else 10_000
MIDDLE = SUBSCRIPTIONS * 6 // 10


@pytest.fixture
def many_subscriptions(db):
    """SUBSCRIPTIONS subscriptions, three to an expiry, and users for the first 1,000 (all a search can reach).

    Written before their indexes are built (a bulk build is the quicker way on the wire server), then
    ``init_db`` builds the production indexes, as a deployment's release step would.
    """
    now = utcnow().replace(microsecond=0)
    db.subscriptions.drop_indexes()
    for start in range(0, SUBSCRIPTIONS, 10_000):  # SUBSCRIPTIONS is a multiple of 10,000
        db.subscriptions.insert_many([
            {"_id": f"s{n:06d}", "user_id": f"u{n:06d}", "tenant_id": "t", "client_state": "x", "resource": "r",
             "status": ("active", "failing", "removed")[n % 3], "expires_at": now + timedelta(minutes=n // 3)}
            for n in range(start, start + 10_000)], ordered=False)
    db.users.insert_many([{"_id": f"u{n:06d}", "email": f"user{n:06d}@contoso.com",
                           "connection": {"status": "connected"}} for n in range(1_000)], ordered=False)
    started = time.monotonic()
    init_db(db)
    print(f"index build: {time.monotonic() - started:.1f}s")
    return now


@pytest.mark.wire
@pytest.mark.slow
def test_the_subscriptions_table_pages_and_searches_through_indexes_at_scale(many_subscriptions, mongodb_uri):
    recorder = Recorder()
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True, event_listeners=[recorder])
    db = client.get_default_database()
    now = many_subscriptions
    middle = (now + timedelta(minutes=MIDDLE // 3), f"s{MIDDLE + 1:06d}")   # rows of its expiry on both sides
    calls = {
        "first page": lambda: ops.subscriptions_page(db, 50),
        "page after": lambda: ops.subscriptions_page(db, 50, after=middle),
        "page before": lambda: ops.subscriptions_page(db, 50, before=middle),
        "page of a status": lambda: ops.subscriptions_page(db, 50, status="failing", after=middle),
        "search email": lambda: ops.search_subscriptions(db, "user000123@contoso.com", 50),
        "search email start": lambda: ops.search_subscriptions(db, "user0001", 50),
        "search ids": lambda: ops.search_subscriptions(db, f"s{SUBSCRIPTIONS - 3:06d}", 50, status="active"),
    }
    answers, plans = {}, []
    for name, call in calls.items():
        recorder.commands.clear()
        started = time.monotonic()
        answers[name] = call()
        print(f"{name}: {time.monotonic() - started:.2f}s")
        for command in recorder.commands:
            plans.append((name, command.get(next(iter(command))), command.get("hint"), explain(db, command)))
    client.close()

    for name, collection, _, plan in plans:
        print(f"{name:20} {collection:14} " + " <- ".join(f"{s}({i})" if i else s for s, i in plan))
    assert [row["_id"] for row in answers["page after"].rows[:3]] == [f"s{MIDDLE + n:06d}" for n in (2, 3, 4)]
    assert [row["_id"] for row in answers["page before"].rows[-2:]] == [f"s{MIDDLE + n:06d}" for n in (-1, 0)]
    assert {row["status"] for row in answers["page of a status"].rows} == {"failing"}
    assert [row["_id"] for row in answers["search email"][0]] == ["s000123"]
    assert len(answers["search email start"][0]) == 50 and answers["search email start"][1] is True
    assert answers["search ids"][0] == []   # the third-last subscription is failing, not active
    scans = [(name, collection) for name, collection, _, plan in plans if any(s == "COLLSCAN" for s, _ in plan)]
    unindexed = [(name, collection) for name, collection, _, plan in plans if not any(s == "IXSCAN" for s, _ in plan)]
    unhinted = [(name, hint) for name, _, hint, plan in plans if hint and ("IXSCAN", hint) not in plan]
    assert scans == [] and unindexed == [] and unhinted == []


@pytest.mark.wire
def test_the_prep_tick_reads_only_the_meetings_starting_soon(db, mongodb_uri):
    """Its cost follows the meetings starting within the longest lead time, not all users or all events."""
    now = utcnow().replace(microsecond=0)
    rows = [{"user_id": f"u{n % 50}", "graph_id": f"e{n}", "start": now + timedelta(minutes=n * 7),
             "end": now + timedelta(minutes=n * 7 + 30), "is_all_day": False, "is_cancelled": False,
             "attendees": []} for n in range(-2_000, 2_000)]
    db.events.insert_many(rows)
    recorder = Recorder()
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True, event_listeners=[recorder])
    soon = events.starting_between(client.get_default_database(), now, now + prep.LONGEST_LEAD)
    [command] = [c for c in recorder.commands if c.get("find") == "events"]
    body = {k: v for k, v in command.items() if not k.startswith("$") and k not in ("lsid", "cursor")}
    stats = client.get_default_database().command("explain", body, verbosity="executionStats")
    client.close()

    plan = stages(stats["queryPlanner"]["winningPlan"])
    print("prep tick events", plan, {k: stats.get("executionStats", {}).get(k) for k in
                                     ("nReturned", "totalKeysExamined", "totalDocsExamined")})
    assert len(soon) == 8 and ("IXSCAN", "start") in plan and not any(s == "COLLSCAN" for s, _ in plan)
    execution = stats.get("executionStats")
    if execution:   # a server that reports execution statistics: only the range was read, of 4,000 events
        assert execution["totalDocsExamined"] <= 10 and execution["totalKeysExamined"] <= 10
