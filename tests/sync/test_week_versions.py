"""What the sync adds for the stored weekly summaries (service.store.weeks): two bumps of the person's events version
per round that wrote anything (after its first write, marked "writing", and after its last); nothing per page or
per event, nothing for a round that wrote nothing."""

from __future__ import annotations

import pytest

from service.sync import requests as sync_requests
from tests.support.mailboxes import soon


@pytest.mark.wire
def test_a_sync_round_bumps_the_events_version_twice_and_only_when_it_wrote(rt, mailbox, mailboxes, run_jobs):
    user_id = mailbox("erin")
    mailboxes.create_many(user_id, [soon(d % 30, 8 + d % 9) for d in range(60)])   # pages of ten
    sync_requests.request_sync(rt.redis, user_id, "connect")
    run_jobs()
    assert rt.db.events.count_documents({"user_id": user_id}) == 60
    held = rt.db.week_summaries.find_one({"_id": user_id})
    assert held["events_version"] == 2 and held["writing"] is False

    sync_requests.request_sync(rt.redis, user_id, "webhook")     # nothing changed at Graph
    run_jobs()
    assert rt.db.week_summaries.find_one({"_id": user_id})["events_version"] == 2

    mailboxes.create_many(user_id, [soon(3, 10)])
    sync_requests.request_sync(rt.redis, user_id, "webhook")
    run_jobs()
    assert rt.db.events.count_documents({"user_id": user_id}) == 61
    assert rt.db.week_summaries.find_one({"_id": user_id})["events_version"] == 4
