"""Emulated mailboxes for the sync and worker tests: users of one tenant in the Graph emulator (over HTTPS on
loopback, tests/conftest.py's ``emulator``), their events made through its control API, calsync's runtime
reaching Graph as them with the emulator's own tokens, and Graph's truth to compare with what calsync stored.

It replaces the sync tests' second Graph fake: what they asked of it has an emulator equivalent (a slow
delta page is a ``slow`` fault on the user's delta path, a request count is the emulator's request log).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests

from emulator.testing import EmulatorHandle
from service.config import Settings
from service.graph import GraphClient
from service.runtime import Runtime, install
from service.store import users
from service.sync import rounds
from tests.support.topology import differences

PT = "Pacific Standard Time"
ZONES = {PT: "America/Los_Angeles", "W. Europe Standard Time": "Europe/Berlin", "Tokyo Standard Time": "Asia/Tokyo",
         "UTC": "UTC"}   # the Windows names the tests write events in, and their IANA zones
# What Graph carries and calsync must never store (no_secret_anywhere looks for it).
PRIVATE = {"body": {"contentType": "html", "content": "<p>SECRET BODY: dial-in 555-0100, password hunter2</p>"},
           "location": {"displayName": "secret building"}}


@dataclass
class Mailboxes:
    """One emulated tenant and the mailboxes of its users, with the events each test makes in them."""

    handle: EmulatorHandle
    tenant: dict
    tokens: dict[str, str] = field(default_factory=dict)
    times: dict[str, tuple[datetime, int]] = field(default_factory=dict)   # event id -> (start, minutes)
    factory: Callable[[str], GraphClient] | None = None     # a test's own way to reach Graph as a user, if set

    @property
    def control(self):
        return self.handle.control

    def add(self, name: str, mail: str | None = None) -> dict:
        user = self.control.create_user(tenant_id=self.tenant["id"], mail=mail or f"{name}@contoso.example",
                                        display_name=name.title(), time_zone=PT)
        self.tokens[user["id"]] = self.control.token(user_id=user["id"])
        return user

    def graph_for(self, user_id: str) -> GraphClient:
        """How calsync's runtime reaches Graph as a user: the test's ``factory``, else :meth:`client`."""
        return (self.factory or self.client)(user_id)

    def client(self, user_id: str, token: Callable[..., str] | None = None, **options) -> GraphClient:
        """A GraphClient acting as the user (the emulator's token for them unless ``token``), trusting the
        emulator's CA; ``options`` go to GraphClient (``sleep``)."""
        session = requests.Session()
        session.trust_env, session.verify = False, self.handle.ca_bundle
        return GraphClient(session, self.handle.graph_url, timeout=10, **options,
                           token=token or (lambda force_refresh=False: self.tokens[user_id]))

    def create(self, user_id: str, start: datetime, minutes: int = 30, *, subject: str | None = None,
               tz: str = "UTC", organizer: str | None = None, **extra) -> str:
        """An event (``organizer``: someone else's meeting, by address), in the Windows zone ``tz``."""
        body = {"subject": subject or f"Meeting {start:%d %H:%M}", **_times(start, minutes, tz), **PRIVATE, **extra}
        if organizer:
            body["organizer"] = {"emailAddress": {"name": organizer.split("@")[0].title(), "address": organizer}}
        event_id = self.control.create_event(user_id, body)["id"]
        self.times[event_id] = (start, minutes)
        return event_id

    def create_series(self, user_id: str, start: datetime, count: int = 3, minutes: int = 30) -> str:
        """A daily series of ``count`` occurrences; returns its master's id (see :meth:`occurrences`)."""
        day = start.astimezone(UTC).date().isoformat()
        return self.control.create_event(user_id, {
            "subject": f"Series {start:%d %H:%M}", **_times(start, minutes), **PRIVATE,
            "recurrence": {"pattern": {"type": "daily", "interval": 1},
                           "range": {"type": "numbered", "startDate": day, "numberOfOccurrences": count}}})["id"]

    def occurrences(self, user_id: str, master_id: str) -> list[str]:
        """The series' occurrences in the sync window, in order of start."""
        start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in rounds.window_for(
            Settings(), datetime.now(UTC)))
        items = [i for i in self.control.calendar(user_id, start, end) if i.get("seriesMasterId") == master_id]
        return [i["id"] for i in sorted(items, key=lambda i: i["start"]["dateTime"])]

    def fail_next(self, *answers: tuple[int, str | None]) -> None:
        """The next Graph requests (anyone's) get these (status, Retry-After) answers, in order."""
        self.control.set_faults(script=[{"status": status, **({"retry_after": after} if after is not None else {})}
                                        for status, after in answers])

    def requests_for(self, user_id: str) -> int:
        return sum(1 for r in self.handle.emulator.requests_log()
                   if r["path"].lower().startswith(f"/v1.0/users/{user_id}/"))

    def create_many(self, user_id: str, starts: list[datetime], minutes: int = 30) -> list[str]:
        made = self.control.create_events(user_id, [{"subject": f"Meeting {n} {start:%d %H:%M}", **PRIVATE,
                                                     **_times(start, minutes)} for n, start in enumerate(starts)])
        for event, start in zip(made, starts, strict=True):
            self.times[event["id"]] = (start, minutes)
        return [event["id"] for event in made]

    def update(self, user_id: str, event_id: str, *, move_minutes: int = 0, start: datetime | None = None,
               minutes: int | None = None, **changes) -> None:
        """Change an event's fields (Graph's names), move it by ``move_minutes`` or to ``start``."""
        if move_minutes or start is not None:
            was, length = self.times[event_id]
            start = start or was + timedelta(minutes=move_minutes)
            self.times[event_id] = (start, minutes or length)
            changes |= _times(start, minutes or length)
        self.control.update_event(user_id, event_id, changes)

    def delete(self, user_id: str, event_id: str) -> None:
        self.control.delete_event(user_id, event_id)

    def slow_delta(self, user_id: str, seconds: float) -> None:
        """Every request under the user's path (the delta pages) takes ``seconds`` longer; 0 ends it."""
        if seconds:
            self.control.set_faults(slow_rate=1.0, slow_seconds=seconds, path_prefix=f"/users/{user_id}/")
        else:
            self.control.clear_faults()

    def delta_pages(self, user_id: str) -> int:
        return sum(1 for r in self.handle.emulator.requests_log()
                   if r["path"].lower().startswith(f"/v1.0/users/{user_id}/") and "/delta" in r["path"].lower())

    def differences(self, db, settings, user_id: str) -> list[str]:
        """What the user's stored sync window lacks, has extra, or holds otherwise than the emulator's truth."""
        return differences(db, self.control, user_id, rounds.window_for(settings, datetime.now(UTC)))


def no_secret_anywhere(db) -> bool:
    """Nothing of :data:`PRIVATE` (bodies, locations) is stored in any event."""
    text = repr(list(db.events.find({})))
    return not any(word in text for word in ("SECRET", "hunter2", "secret building", "555-0100"))


def _times(start: datetime, minutes: int, tz: str = "UTC") -> dict:
    def stamp(value: datetime) -> dict:
        return {"dateTime": value.astimezone(ZoneInfo(ZONES[tz])).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": tz}

    return {"start": stamp(start), "end": stamp(start + timedelta(minutes=minutes))}


def soon(days: float = 1, hours: float = 10) -> datetime:
    """``days`` after today's midnight (UTC), at ``hours``."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hours)


# ------------------------------------------------------------------ fixtures (a folder's conftest names them)

@pytest.fixture
def mailboxes(emulator) -> Mailboxes:
    return Mailboxes(emulator, emulator.control.create_tenant(display_name="Contoso"))


@pytest.fixture
def graph_rt(settings, db, redis_conn, mailboxes):
    """calsync's runtime, reaching Graph (the emulator) as each user with the emulator's tokens."""
    runtime = Runtime(settings.with_overrides(**mailboxes.handle.settings_overrides()), db=db, redis_conn=redis_conn,
                      graph_for=mailboxes.graph_for)
    install(runtime)
    yield runtime
    install(None)


@pytest.fixture
def mailbox(graph_rt, mailboxes):
    """mailbox(name) → the id of a user with a mailbox in the emulator, connected in calsync's store."""

    def make(name: str = "user", mail: str | None = None) -> str:
        user = mailboxes.add(name, mail)
        users.upsert_from_graph(graph_rt.db, {"id": user["id"], "mail": user["mail"], "displayName": name},
                                mailboxes.tenant["id"], "home")
        return user["id"]

    return make
