"""What one mailbox's enrolment costs in round trips: MongoDB commands (a command listener on the client the
stack uses) and Graph requests (the emulator's log). A tenant of 20,000 runs this job 20,000 times on a server
shared with Graph's stand-in and the database (bench P11), so a read or a write added here is a cost that
should be chosen, not slipped in: these counts are pinned. Change them deliberately, with the bench's figures."""

from __future__ import annotations

import collections

import pymongo
import pytest
from pymongo import monitoring

from service import store
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


def _enrolled_tenant(stack, meeting: bool = True):
    """A tenant-wide tenant whose directory job ran (the enrolment jobs are queued, not run); returns alice."""
    control = stack.emulator.control
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    alice = emulated_user(stack, mail="alice@contoso.com", tenant_id=tenant)
    if meeting:
        control.create_event(alice["id"], meeting_soon())
    connect_tenant(stack, admin["id"])
    stack.runtime.tenant_wide.sync_directory(tenant)
    return alice


def test_one_enrolment_probe_subscription_and_first_sync_in_pinned_round_trips(stack, commands):
    """A new mailbox with nothing in its calendar yet, as bench P11 enrols them."""
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
