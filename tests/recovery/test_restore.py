"""MongoDB restored from a copy of its collections taken earlier in the run, then ``calsync init-db`` and
``calsync recover``: subscriptions made since are adopted, leftovers deleted at Graph, every user resynced in
full, a digest sent since is not sent again, and outbound sequences never repeat."""

from __future__ import annotations

import random

import pytest
from click.testing import CliRunner

from service import store
from service.cli import cli
from service.cli import recover as recover_cli
from service.digest import tick as digest_tick
from service.outbound import endpoints
from service.recovery import witness
from service.store import digests, utcnow
from service.store import subscriptions as subscriptions_store
from service.subscriptions import mirror
from service.subscriptions.lifecycle import subscription_body
from service.sync import rounds
from tests.support.calendars import Calendar
from tests.support.clock import digest_due_today, local_today, midday_zone
from tests.support.connect import connect_user, emulated_user
from tests.support.receiver import running_receiver
from tests.support.topology import differences


def snapshot(db) -> dict[str, list[dict]]:
    """A copy of every collection, as a backup taken now would hold it."""
    return {name: list(db[name].find()) for name in db.list_collection_names()}


def restore(db, backup: dict[str, list[dict]]) -> None:
    """Put the database back to ``backup``: collections created since are dropped, the others replaced."""
    for name in db.list_collection_names():
        db[name].drop()
    for name, documents in backup.items():
        if documents:
            db[name].insert_many(documents)


def graph_subscriptions(control, user_id: str) -> list[dict]:
    return [s for s in control.subscriptions() if s["status"] == "active" and s["userId"] == user_id]


@pytest.mark.wire
def test_a_restored_mongodb_is_brought_back_in_line_by_init_db_and_recover(make_stack, db, redis_conn, smtp_inbox,
                                                                             monkeypatch):
    with make_stack(outbound_allow_private=True) as stack, running_receiver() as receiver:
        run(stack, db, redis_conn, smtp_inbox, monkeypatch, receiver)


def run(stack, db, redis_conn, smtp_inbox, monkeypatch, receiver) -> None:
    control = stack.emulator.control
    endpoints.register(db, stack.settings, receiver.url, ["meetings.changed"])
    zone = midday_zone()
    alice, bob, carol = (emulated_user(stack, mail=f"{n}@contoso.com") for n in ("alice", "bob", "carol"))
    for person in (alice, bob):
        connect_user(stack, person["id"], zone)
    stack.run_jobs()
    rng = random.Random(26)
    calendars = {p["id"]: Calendar(control, p, rng) for p in (alice, bob)}
    for calendar in calendars.values():
        for _ in range(4):
            calendar.step()
    control.wait_idle(timeout=30)
    stack.run_jobs()
    backup = snapshot(db)                                          # the backup, taken mid-run

    digest_due_today(db, alice["id"])                               # after it: Alice's digest goes out,
    digest_tick.tick(db, redis_conn, stack.settings, utcnow())
    stack.run_jobs()
    assert len(smtp_inbox.messages) == 1
    old_bob = subscriptions_store.for_user(db, bob["id"])
    stack.runtime.subscriptions.recreate(bob["id"], "test")              # Bob's subscription is replaced,
    leftover = stack.runtime.graph_for(alice["id"]).request("POST", "subscriptions", json=subscription_body(
        stack.settings, alice["id"], "x" * 64, utcnow(), me=True)).json()   # Alice gets a stray one,
    for calendar in calendars.values():                             # everyone's calendar changes,
        for _ in range(4):
            calendar.step()
    control.wait_idle(timeout=30)
    stack.run_jobs()
    connect_user(stack, carol["id"], zone)                          # and Carol connects.
    stack.run_jobs()
    sequences_before = {d["_id"]: d["value"] for d in db.outbound_sequences.find()}
    new_bob = subscriptions_store.for_user(db, bob["id"]).id

    restore(db, backup)
    store.init_db(db)
    redis_conn.delete(mirror.key(new_bob))        # as if Redis had not kept it either: only Graph knows it
    for calendar in calendars.values():
        calendar.step()
    control.wait_idle(timeout=30)
    drops = [d for d in control.deliveries() if new_bob in d["subscription_ids"]]
    assert drops and all(d["status"] == 202 for d in drops), drops   # unknown to the store: 202, dropped
    assert int(redis_conn.get("calsync:stats:webhook:dropped:unknown_subscription") or 0) > 0

    monkeypatch.setattr(recover_cli, "runtime_from_env", lambda: stack.runtime)
    result = CliRunner().invoke(cli, ["recover"])
    assert result.exit_code == 0, result.output
    stack.run_jobs()

    print(result.output)
    for person in (alice, bob):
        at_graph = graph_subscriptions(control, person["id"])
        assert [s["id"] for s in at_graph] == [subscriptions_store.for_user(db, person["id"]).id]
    assert subscriptions_store.for_user(db, bob["id"]).id == new_bob != old_bob.id        # adopted
    assert leftover["id"] not in {s["id"] for s in control.subscriptions() if s["status"] == "active"}   # deleted
    window = rounds.window_for(stack.settings, utcnow())
    for person in (alice, bob):
        assert differences(db, control, person["id"], window) == []
    today = local_today(zone).isoformat()
    assert digests.get(db, alice["id"], today)["status"] == "sent"
    digest_tick.tick(db, redis_conn, stack.settings, utcnow())      # the restored schedule says it is due again
    stack.run_jobs()
    assert len(smtp_inbox.messages) == 1                            # but it went out once
    after = {d["_id"]: d["value"] for d in db.outbound_sequences.find()}
    assert sequences_before and all(after[user] > value for user, value in sequences_before.items() if user in after)
    assert "subscription adopted" in result.output and "digests restored" in result.output


def test_the_witness_lists_what_it_was_told(redis_conn):
    sent = utcnow()

    witness.digest_sent(redis_conn, "user:with:colons", "2026-12-07", sent)
    witness.prep_sent(redis_conn, "abc123", "u1", "meeting-1", sent, sent)

    assert list(witness.digests(redis_conn)) == [("user:with:colons", "2026-12-07", sent)]
    assert list(witness.preps(redis_conn)) == [("abc123", "u1", "meeting-1", sent, sent)]
