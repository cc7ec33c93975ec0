"""``calsync init-db``: every index, the retired ones dropped, and each data migration run once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING, IndexModel

from service import store
from service.cli import migrations
from service.store import users


def test_init_db_creates_every_declared_index_and_drops_retired_ones(db):
    db.events.create_indexes([IndexModel([("attendees.email", ASCENDING)], name="attendee_email")])

    store.init_db(db)
    store.init_db(db)   # idempotent

    for collection, models in store.declared_indexes().items():
        present = db[collection].index_information()
        assert {m.document["name"] for m in models} <= set(present), collection
    assert "attendee_email" not in db.events.index_information()


def test_migrations_schedule_digests_and_mark_users_without_a_subscription_once(db, settings):
    now = datetime.now(UTC)
    for user_id in ("old-with-sub", "old-without-sub"):
        db.users.insert_one({"_id": user_id, "email": f"{user_id}@contoso.com", "time_zone": "UTC",
                             "connection": {"status": "connected", "since": now},
                             "digest": {"enabled": True, "time": None}})
    db.subscriptions.insert_one({"_id": "s1", "user_id": "old-with-sub", "status": "active", "expires_at": now,
                                 "client_state": "a-clientState-stored-in-clear"})
    db.sync_state.insert_one({"_id": "old-with-sub", "delta_link": "https://graph/delta?$deltatoken=old"})

    first = migrations.run(db, settings)
    again = migrations.run(db, settings)

    assert first == {"2026-12-digest-next-at": 2, "2026-12-subscription-missing-since": 1,
                     "2026-12-per-calendar-cursors": 1, "2026-12-client-state-digests": 1,
                     "2027-01-immutable-id-subscriptions": 1}
    stored = db.subscriptions.find_one({"_id": "s1"})
    assert stored["recreate_reason"] == "immutable-ids"   # only marked: a job replaces it, not the release step
    assert "client_state" not in stored
    assert stored["client_state_sha256"] == hashlib.sha256(b"a-clientState-stored-in-clear").hexdigest()
    assert "sync_state" not in db.list_collection_names()
    assert again == {}
    assert all(u["digest"]["next_at"] is not None for u in db.users.find())
    later = datetime.now(UTC) + timedelta(seconds=1)   # stores keep milliseconds (mongomock rounds them)
    assert users.missing_subscription_since_before(db, later) == ["old-without-sub"]
