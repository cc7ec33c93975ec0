"""What one mailbox's enrolment costs in round trips: MongoDB commands (a command listener on the client the
stack uses) and Graph requests (the emulator's log). A tenant of 20,000 runs this job 20,000 times on a server
shared with Graph's stand-in and the database (bench P11), so a read or a write added here is a cost that
should be chosen, not slipped in: these counts are pinned. Change them deliberately, with the bench's figures."""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta

import pymongo
import pytest
from pymongo import monitoring
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from service import queues, store
from service.mailbox import PAUSED_KEY
from service.store import users as user_store
from tests.support.connect import emulated_user
from tests.support.tenant_admin import GLOBAL_ADMIN, connect_tenant, meeting_soon, new_tenant

pytestmark = pytest.mark.wire   # the listener needs a wire client


class Commands(monitoring.CommandListener):
    """Every command sent while ``recording``: (name, collection)."""

    def __init__(self) -> None:
        self.recording = False
        self.sent: list[tuple[str, str]] = []

    def started(self, event) -> None:
        if self.recording:
            self.sent.append((event.command_name, str(event.command.get(event.command_name))))

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass

    def count(self, name: str, collection: str) -> int:
        return self.sent.count((name, collection))


@pytest.fixture
def commands() -> Commands:
    return Commands()


@pytest.fixture
def db(mongodb_uri, commands):
    """The test's database, as conftest's, on a client whose commands ``commands`` sees."""
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True, event_listeners=[commands])
    database = client.get_default_database()
    store.init_db(database)
    yield database
    client.close()


def _enrolled_tenant(stack, meeting: bool = True, others: int = 0):
    """A tenant-wide tenant whose directory job ran (the enrolment jobs are queued, not run); returns alice (and
    ``others`` more mailboxes after her, as a list, when asked for)."""
    control = stack.emulator.control
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    alice = emulated_user(stack, mail="alice@contoso.com", tenant_id=tenant)
    more = [emulated_user(stack, mail=f"m{n}@contoso.com", tenant_id=tenant) for n in range(others)]
    if meeting:
        control.create_event(alice["id"], meeting_soon())
    connect_tenant(stack, admin["id"])
    stack.runtime.tenant_wide.sync_directory(tenant)
    return [alice, *more] if others else alice


def test_one_enrolment_probe_subscription_and_first_sync_in_pinned_round_trips(stack, commands):
    """A new mailbox with nothing in its calendar yet, enrolled alone (a retry, a re-check after a policy change)."""
    alice = _enrolled_tenant(stack, meeting=False)
    control = stack.emulator.control
    logged = len(control.graph_requests())

    commands.recording = True
    assert stack.runtime.tenant_wide.enrol_mailbox(alice["id"]) == "subscribed:new"
    commands.recording = False

    db = stack.runtime.db
    user = user_store.get(db, alice["id"])
    assert user.sync.last_sync_at is not None and user.sync.calendars_refreshed_at is not None
    assert db.calendars.count_documents({"user_id": alice["id"], "delta_link": {"$type": "string"}}) == 1
    assert db.subscriptions.count_documents({"user_id": alice["id"]}) == 1
    # The calendar list: read once by the round, once after the refresh wrote it (it was 7 reads).
    assert commands.count("find", "calendars") == 2, commands.sent
    # The user: enrolment's check, the app token's, the subscription's (under its lock), the round's (it was 7).
    assert commands.count("find", "users") == 4, commands.sent
    # The listing is one bulk write; each calendar's outcome and cursor are one more at the round's end.
    assert commands.count("update", "calendars") == 2, commands.sent
    by_name = collections.Counter(name for name, _ in commands.sent)
    # The user's writes: the scope, the subscription (clearing a missing one), the round's outcome (with when
    # the calendar list was read: it was a write of its own).
    assert commands.count("update", "users") == 3, commands.sent
    assert len(commands.sent) == 18, by_name   # 28 before the round trips were cut (bench/RESULTS.md, P11)
    # Graph: the probe, the subscription, the calendar list, one delta page.
    methods = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in control.graph_requests()[logged:]]
    assert methods == [("GET", "calendars"), ("POST", "subscriptions"), ("GET", "calendars"), ("GET", "delta")]


MAILBOXES = 5


def test_a_chunk_of_mailboxes_enrols_in_fewer_round_trips_each(stack, commands):
    """How the directory job's chunks enrol (bench P11): one job for up to 20 mailboxes, one read of their users
    documents, one app token, their probes in one $batch; then each one's subscription and first sync."""
    enrolled = _enrolled_tenant(stack, meeting=False, others=MAILBOXES - 1)
    ids = [m["id"] for m in enrolled]
    control = stack.emulator.control
    logged = len(control.graph_requests())

    commands.recording = True
    outcomes = stack.runtime.tenant_wide.enrol_mailboxes([[user_id, "new"] for user_id in ids])
    commands.recording = False

    assert outcomes == {user_id: "subscribed:new" for user_id in ids}
    db = stack.runtime.db
    assert db.subscriptions.count_documents({"user_id": {"$in": ids}}) == MAILBOXES
    assert db.users.count_documents({"_id": {"$in": ids}, "sync.last_sync_at": {"$ne": None}}) == MAILBOXES
    by_name = collections.Counter(name for name, _ in commands.sent)
    # The users: one read for the chunk, then per mailbox the subscription's and the round's (4 alone).
    assert commands.count("find", "users") == 1 + 2 * MAILBOXES, commands.sent
    assert commands.count("find", "calendars") == 2 * MAILBOXES, commands.sent
    assert commands.count("update", "calendars") == 2 * MAILBOXES, commands.sent
    assert commands.count("update", "users") == 3 * MAILBOXES, commands.sent
    assert len(commands.sent) == 1 + 16 * MAILBOXES, by_name   # 18 a mailbox alone
    # Graph: the probes in one $batch (each logged as one of its requests), then per mailbox as alone.
    sent = control.graph_requests()[logged:]
    outer = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in sent if not r["in_batch"]]
    assert outer[0] == ("POST", "$batch")
    assert sorted(outer[1:]) == sorted([("POST", "subscriptions"), ("GET", "calendars"), ("GET", "delta")]
                                       * MAILBOXES)
    assert sorted(r["path"] for r in sent if r["in_batch"]) == sorted(f"/v1.0/users/{i}/calendars" for i in ids)


def test_a_delta_round_reads_the_calendar_list_once(stack, commands):
    alice = _enrolled_tenant(stack)
    assert stack.runtime.tenant_wide.enrol_mailbox(alice["id"]) == "subscribed:new"
    control = stack.emulator.control
    control.create_event(alice["id"], meeting_soon(days_ahead=3))
    control.request("POST", "/deliveries/wait-idle", {"timeout": 30})   # its notification came in before

    commands.recording = True
    report = stack.runtime.tenant_wide.first_sync(alice["id"])   # any sync of hers: here a delta round
    commands.recording = False

    assert report == "ok"
    assert stack.runtime.db.events.count_documents({"user_id": alice["id"]}) == 2
    assert commands.count("find", "calendars") == 1, commands.sent
    assert commands.count("update", "calendars") == 1, commands.sent   # outcome and cursor, one bulk write


def test_one_mailbox_throttled_in_a_chunk_is_retried_alone_and_the_others_enrol(stack):
    """Bob's probe answers 429 inside the $batch with a Retry-After longer than the client waits inline: he is
    queued again alone, with the retries his own job would have had; the other mailboxes of the chunk enrol."""
    enrolled = _enrolled_tenant(stack, meeting=False, others=2)
    alice, bob, carol = (m["id"] for m in enrolled)
    control = stack.emulator.control
    control.set_faults(rate_429=1.0, retry_after="40", path_prefix=f"/users/{bob}/")

    outcomes = stack.runtime.tenant_wide.enrol_mailboxes([[alice, "new"], [bob, "new"], [carol, "switched"]])
    control.clear_faults()

    assert outcomes == {alice: "subscribed:new", bob: "retrying", carol: "subscribed:switched"}
    db = stack.runtime.db
    assert db.subscriptions.count_documents({"user_id": {"$in": [alice, carol]}}) == 2
    assert db.subscriptions.count_documents({"user_id": bob}) == 0
    queue = queues.get_queue(queues.SUBSCRIPTIONS, stack.runtime.redis)
    (job_id,) = ScheduledJobRegistry(queue=queue).get_job_ids()
    job = Job.fetch(job_id, connection=stack.runtime.redis)
    assert job.func_name == queues.TENANT_ENROL_MAILBOX and list(job.args) == [bob, "new"]
    assert job.retries_left == queues.DEFAULT_RETRY.max - 1
    assert job.retry_intervals == queues.DEFAULT_RETRY.intervals[1:]
    due = ScheduledJobRegistry(queue=queue).get_scheduled_time(job_id)
    assert due >= datetime.now(UTC) + timedelta(seconds=30)   # not before Graph's Retry-After (40 s)
    # His 429 paused his mailbox for every worker, as alone; once it lapses, alone, he enrols as the others did.
    gate = stack.runtime.connections.tokens.mailboxes
    assert gate.paused_for(bob) > 30
    stack.runtime.redis.delete(PAUSED_KEY.format(mailbox=bob))
    assert stack.runtime.tenant_wide.enrol_mailbox(bob) == "subscribed:new"


def test_mailboxes_graph_will_not_let_calsync_read_are_classified_in_a_chunk_as_alone(stack):
    enrolled = _enrolled_tenant(stack, meeting=False, others=2)
    alice, bob, carol = (m["id"] for m in enrolled)
    control = stack.emulator.control
    control.request("PUT", f"/users/{bob}/mailbox", {"state": "no_license"})
    tenant = stack.runtime.db.users.find_one({"_id": alice})["tenant_id"]
    control.request("PUT", "/scopes", {"tenant_id": tenant, "kind": "access_policy", "user_ids": [alice, bob]})

    outcomes = stack.runtime.tenant_wide.enrol_mailboxes([[alice, "new"], [bob, "new"], [carol, "new"],
                                                          ["nobody", "new"]])

    assert outcomes == {alice: "subscribed:new", bob: "no_mailbox", carol: "out_of_scope", "nobody": "skipped"}
    scopes = {u["_id"]: u["scope"] for u in stack.runtime.db.users.find({"_id": {"$in": [alice, bob, carol]}})}
    assert scopes[bob]["state"] == "no_mailbox" and scopes[bob]["code"] == "MailboxNotEnabledForRESTAPI"
    assert scopes[carol]["state"] == "out_of_scope" and scopes[carol]["code"] == "ErrorAccessDenied"
    assert stack.runtime.db.subscriptions.count_documents({"user_id": {"$in": [bob, carol]}}) == 0
    queue = queues.get_queue(queues.SUBSCRIPTIONS, stack.runtime.redis)
    queued = [j.func_name for j in queue.get_jobs()] + ScheduledJobRegistry(queue=queue).get_job_ids()
    assert queues.TENANT_ENROL_MAILBOX not in queued, queued   # reported, never retried
