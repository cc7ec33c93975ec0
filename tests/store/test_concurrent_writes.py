"""Two writers on the same events at the same moment (a rich-notification job and a sync, or two syncs
after a lost lock) never leave an older version over a newer one, never lose the newer one, and never
bring back a deleted event. Run on the wire server, where the writes really interleave."""

from __future__ import annotations

import pytest

from service.store import events
from tests.support.racing import NOW, race, removed, version

ROUNDS = 150


@pytest.mark.wire
def test_an_older_and_a_newer_version_written_at_once_always_leave_the_newer(db, mongodb_uri):
    lost = []
    for n in range(ROUNDS):
        graph_id = f"race-{n}"
        race(mongodb_uri,
             lambda d, g=graph_id: events.apply_changes(d, "u1", [version(g, 1)], NOW),
             lambda d, g=graph_id: events.apply_changes(d, "u1", [version(g, 2)], NOW))
        if (events.get(db, "u1", graph_id) or {}).get("subject") != "v2":
            lost.append(graph_id)

    assert lost == []
    assert db.events.count_documents({"user_id": "u1"}) == ROUNDS


@pytest.mark.wire
def test_a_replayed_version_racing_its_deletion_never_brings_the_event_back(db, mongodb_uri):
    resurrected = []
    for n in range(ROUNDS):
        graph_id = f"gone-{n}"
        events.apply_changes(db, "u1", [version(graph_id, 1)], NOW)
        race(mongodb_uri,
             lambda d, g=graph_id: events.apply_changes(d, "u1", [removed(g)], NOW),
             lambda d, g=graph_id: events.apply_changes(d, "u1", [version(g, 1)], NOW))
        if events.get(db, "u1", graph_id) is not None:
            resurrected.append(graph_id)

    assert resurrected == []


def test_the_same_event_twice_in_one_page_keeps_the_newer_whatever_the_order(db):
    result = events.apply_changes(db, "u1", [version("a", 2), version("a", 1), version("b", 1), version("b", 3)], NOW)

    assert events.get(db, "u1", "a")["subject"] == "v2" and events.get(db, "u1", "b")["subject"] == "v3"
    assert result.upserted == 2 and result.stale == 2


def test_a_removal_inside_a_page_applies_in_page_order(db):
    events.apply_changes(db, "u1", [version("a", 2)], NOW)

    result = events.apply_changes(db, "u1", [version("a", 3), removed("a"), version("a", 1), version("b", 1)], NOW)

    assert events.get(db, "u1", "a") is None               # v3 then deleted; the v1 replay stays buried
    assert events.get(db, "u1", "b")["subject"] == "v1"
    assert result.deleted == 1 and result.upserted == 2 and result.stale == 1


def test_an_insert_that_meets_another_writers_insert_is_decided_again(db, monkeypatch):
    """Between our read of the stored versions and our insert, another writer inserts the same event: the
    duplicate key sends it back through the read, and our newer version is written over theirs."""
    collection = type(db.events)
    real_insert_many = collection.insert_many
    interleaved = []

    def insert_after_another_writer(self, documents, *args, **kwargs):
        if self.name == "events" and not interleaved:
            interleaved.append(1)
            self.insert_one({**events.to_document(version("a", 1)), "user_id": "u1", "graph_id": "a"})
        return real_insert_many(self, documents, *args, **kwargs)

    monkeypatch.setattr(collection, "insert_many", insert_after_another_writer)

    result = events.apply_changes(db, "u1", [version("a", 2)], NOW)

    assert interleaved and result.upserted == 1 and result.stale == 0
    assert events.get(db, "u1", "a")["subject"] == "v2"
    assert db.events.count_documents({"user_id": "u1", "graph_id": "a"}) == 1


def test_an_update_that_meets_another_writers_update_is_decided_again(db, monkeypatch):
    """Another writer stores a newer version between our read and our compare-and-set: ours is stale."""
    events.apply_changes(db, "u1", [version("a", 1)], NOW)
    collection = type(db.events)
    real_bulk_write = collection.bulk_write
    interleaved = []

    def write_after_another_writer(self, requests, *args, **kwargs):
        if self.name == "events" and not interleaved:
            interleaved.append(1)
            self.update_one({"user_id": "u1", "graph_id": "a"}, {"$set": events.to_document(version("a", 3))})
        return real_bulk_write(self, requests, *args, **kwargs)

    monkeypatch.setattr(collection, "bulk_write", write_after_another_writer)

    result = events.apply_changes(db, "u1", [version("a", 2)], NOW)

    assert interleaved and result.upserted == 0 and result.stale == 1
    assert events.get(db, "u1", "a")["subject"] == "v3"
