"""``meetings.changed``: one event per user per sync round, listing what the round wrote, coalesced."""

from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook

from service.outbound import endpoints
from service.store.events import MeetingChanges
from service.sync import requests
from tests.support.mailboxes import soon
from tests.support.receiver import running_receiver


@pytest.fixture
def settings(make_settings):
    return make_settings(outbound_allow_private=True, outbound_timeout=1.0)



@pytest.fixture
def subscribed(rt):
    with running_receiver() as receiver:
        created = endpoints.register(rt.db, rt.settings, receiver.url, ["meetings.changed"])
        yield receiver, created.secret


def changed(receiver, secret, count):
    got = receiver.wait_for(count)
    assert len(got) == count
    return [Webhook(secret).verify(r.body, r.headers)["data"] for r in got]


def test_each_round_sends_one_event_with_its_created_updated_and_deleted_meetings(
        rt, mailbox, mailboxes, run_jobs, subscribed):
    receiver, secret = subscribed
    user_id = mailbox("alice")
    ids = [mailboxes.create(user_id, soon(d), subject="Confidential merger") for d in range(4)]
    requests.request_sync(rt.redis, user_id, "connect")
    run_jobs()

    mailboxes.update(user_id, ids[0], move_minutes=30)
    mailboxes.update(user_id, ids[0], move_minutes=30)
    mailboxes.delete(user_id, ids[1])
    added = mailboxes.create(user_id, soon(2))
    requests.request_sync(rt.redis, user_id, "webhook")
    run_jobs()
    requests.request_sync(rt.redis, user_id, "webhook")   # nothing changed: no event
    run_jobs()

    first, second = changed(receiver, secret, 2)
    assert sorted(first["created"]) == sorted(ids) and first["updated"] == first["deleted"] == []
    assert second == {"created": [added], "updated": [ids[0]], "deleted": [ids[1]], "truncated": False}
    assert "Confidential" not in json.dumps([r.body for r in receiver.requests])
    assert rt.db.outbound_events.count_documents({"type": "meetings.changed"}) == 2


def test_changes_coalesce_in_the_order_they_were_written():
    changes = MeetingChanges(updated={"kept"}, created={"temp"})

    changes.delete("temp")          # created then deleted in one round: nothing to tell
    changes.delete("kept")          # updated then deleted: deleted
    changes.create("new")
    changes.update("new")           # created then updated: still created
    changes.delete("back")
    changes.create("back")          # deleted then back: the receiver's copy is out of date
    other = MeetingChanges(deleted={"new"}, updated={"x"})
    changes.add(other)

    assert (changes.created, changes.updated, changes.deleted) == (set(), {"back", "x"}, {"kept"})
    assert not MeetingChanges() and changes
