"""Tombstones expire through their TTL index (the server deletes them), and nothing waits for that."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pymongo

from harness.waiting import wait_until
from service.store import events
from tests.support.racing import removed, version

NOW = datetime.now(UTC).replace(microsecond=0)


def run_ttl_monitor(db) -> None:
    """Let the server's TTL monitor make a pass: SecantusDB runs one on request; mongod every 60 s."""
    if not hasattr(db.client, "admin") or type(db.client).__module__.startswith("mongomock"):
        return   # mongomock drops expired documents when they are next read
    try:
        db.client.admin.command({"secantusAdmin.pruneTtl": 1})
        return
    except pymongo.errors.OperationFailure:
        pass
    wait_until(lambda: not db.event_tombstones.count_documents({"graph_id": "a"}), timeout=75, interval=1,
               message="the TTL monitor to delete the expired tombstone")


def test_the_ttl_index_deletes_expired_tombstones(db):
    long_ago = NOW - timedelta(days=events.TOMBSTONE_DAYS, minutes=1)
    events.apply_changes(db, "u1", [version("a", 1)], long_ago)
    events.apply_changes(db, "u1", [removed("a")], long_ago)          # its tombstone expired a minute ago
    events.apply_changes(db, "u1", [version("b", 1)], NOW)
    events.apply_changes(db, "u1", [removed("b")], NOW)               # this one lives for three days

    run_ttl_monitor(db)


    assert db.event_tombstones.count_documents({"graph_id": "a"}) == 0
    assert db.event_tombstones.count_documents({"graph_id": "b"}) == 1


def test_an_expired_tombstone_blocks_nothing_even_before_the_server_removes_it(db):
    events.apply_changes(db, "u1", [version("a", 1)], NOW)
    events.apply_changes(db, "u1", [removed("a")], NOW)
    after_expiry = NOW + timedelta(days=events.TOMBSTONE_DAYS, seconds=1)

    while_live = events.apply_changes(db, "u1", [version("a", 1)], NOW + timedelta(days=1))
    after = events.apply_changes(db, "u1", [version("a", 1)], after_expiry)

    assert while_live.stale == 1 and after.upserted == 1
    assert events.get(db, "u1", "a")["subject"] == "v1"
