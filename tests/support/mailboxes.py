"""Emulated mailboxes for the sync and worker tests: users of one tenant in the Graph emulator (over HTTPS on
loopback, tests/conftest.py's ``emulator``), their events made through its control API, calsync's runtime
reaching Graph as them with the emulator's own tokens, and Graph's truth to compare with what calsync stored.

It replaces the sync tests' second Graph fake: what they asked of it has an emulator equivalent (a slow
delta page is a ``slow`` fault on the user's delta path, a request count is the emulator's request log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import requests

from emulator.testing import EmulatorHandle
from service.graph import GraphClient
from service.runtime import Runtime, install
from service.store import users
from service.sync import rounds
from tests.support.calendars import expected, stored

PT = "Pacific Standard Time"


@dataclass
class Mailboxes:
    """One emulated tenant and the mailboxes of its users, with the events each test makes in them."""

    handle: EmulatorHandle
    tenant: dict
    tokens: dict[str, str] = field(default_factory=dict)
    times: dict[str, tuple[datetime, int]] = field(default_factory=dict)   # event id -> (start, minutes)

    @property
    def control(self):
        return self.handle.control

    def add(self, name: str, mail: str | None = None) -> dict:
        user = self.control.create_user(tenant_id=self.tenant["id"], mail=mail or f"{name}@contoso.example",
                                        display_name=name.title(), time_zone=PT)
        self.tokens[user["id"]] = self.control.token(user_id=user["id"])
        return user

    def client(self, user_id: str) -> GraphClient:
        """A GraphClient acting as the user (what calsync's runtime gets for them), trusting the emulator's CA."""
        session = requests.Session()
        session.trust_env, session.verify = False, self.handle.ca_bundle
        return GraphClient(session, self.handle.graph_url, token=lambda force_refresh=False: self.tokens[user_id],
                           timeout=10)

    def create(self, user_id: str, start: datetime, minutes: int = 30, *, subject: str | None = None,
               **extra) -> str:
        body = {"subject": subject or f"Meeting {start:%d %H:%M}", **_times(start, minutes), **extra}
        event_id = self.control.create_event(user_id, body)["id"]
        self.times[event_id] = (start, minutes)
        return event_id

    def create_many(self, user_id: str, starts: list[datetime], minutes: int = 30) -> list[str]:
        made = self.control.create_events(user_id, [{"subject": f"Meeting {n} {start:%d %H:%M}",
                                                     **_times(start, minutes)} for n, start in enumerate(starts)])
        for event, start in zip(made, starts, strict=True):
            self.times[event["id"]] = (start, minutes)
        return [event["id"] for event in made]

    def update(self, user_id: str, event_id: str, *, move_minutes: int = 0, **changes) -> None:
        if move_minutes:
            start, minutes = self.times[event_id]
            self.times[event_id] = (start := start + timedelta(minutes=move_minutes), minutes)
            changes |= _times(start, minutes)
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
        start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in rounds.window_for(settings, datetime.now(UTC)))
        truth = {item["id"]: expected(item) for item in self.control.calendar(user_id, start, end)}
        mine = {doc["graph_id"]: stored(doc) for doc in db.events.find({"user_id": user_id})}
        problems = [f"missing {g[-8:]}" for g in truth.keys() - mine.keys()]
        problems += [f"extra {g[-8:]}" for g in mine.keys() - truth.keys()]
        problems += [f"differs {g[-8:]}: {sorted(k for k in truth[g] if truth[g][k] != mine[g].get(k))}"
                     for g in truth.keys() & mine.keys() if truth[g] != mine[g]]
        return problems


def _times(start: datetime, minutes: int) -> dict:
    def stamp(value: datetime) -> dict:
        return {"dateTime": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}

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
                      graph_for=mailboxes.client)
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
