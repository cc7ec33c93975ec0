"""A small Microsoft Graph stand-in for the sync tests and bench: ``/me``, ``users/{id}/calendars`` (one
default calendar each) and that calendar's ``calendarView/delta``.

Served over real HTTP on loopback. It keeps each user's truth (events with bodies, locations and
everything else a real delta page carries, so stripping is exercised), a change log for delta tokens,
pages honouring ``Prefer: odata.maxpagesize``, and knobs for failures: queued 429/503 answers with
fractional ``Retry-After``, 410 for delta tokens, a per-page delay, and users that are gone (404).
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from service.graph import GraphClient
from service.runtime import Runtime, install
from service.store import users

ZONES = ("Pacific Standard Time", "W. Europe Standard Time", "Tokyo Standard Time", "UTC")


def graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def wall(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


@dataclass
class FakeUser:
    id: str
    mail: str
    name: str
    events: dict[str, dict] = field(default_factory=dict)
    log: list[tuple[int, str]] = field(default_factory=list)   # (seq, event id), in change order


class FakeGraph:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: dict[str, FakeUser] = {}
        self.seq = 0
        self.requests = 0
        self.delta_pages = 0
        self.page_delay = 0.0
        self.default_page_size = 10
        self.failures: deque[tuple[int, str | None]] = deque()   # (status, Retry-After) answered next
        self.reject_delta_tokens: int | str = 0        # how many delta-token requests get 410 (or "always")
        self.gone: set[str] = set()
        self.url = ""

    # -------------------------------------------------------------- truth changes (the "calendar")

    def add_user(self, user_id: str, mail: str, name: str | None = None) -> FakeUser:
        with self.lock:
            user = self.users[user_id] = FakeUser(user_id, mail, name or mail.split("@")[0])
            return user

    def _log(self, user: FakeUser, event_id: str) -> None:
        self.seq += 1
        user.log.append((self.seq, event_id))

    def create(self, user_id: str, start: datetime, minutes: int = 30, *, subject: str | None = None,
               organizer: str | None = None, tz: str = "Pacific Standard Time", attendees: int = 2,
               series: tuple[str, str] | None = None, sensitivity: str = "normal") -> str:
        """Create a single instance (or an occurrence of ``series`` = (master id, ical prefix))."""
        with self.lock:
            user = self.users[user_id]
            event_id = "AAMk" + uuid.uuid4().hex + uuid.uuid4().hex
            now = datetime.now(UTC)
            org = organizer or user.mail
            user.events[event_id] = {
                "id": event_id, "subject": subject or f"Meeting {event_id[-6:]}",
                "start": start, "end": start + timedelta(minutes=minutes), "tz": tz,
                "is_all_day": False, "organizer": (org.split("@")[0].title(), org),
                "attendees": [(f"Person {i}", f"Person{i}.{user_id[:4]}@Example.COM", "required",
                               random.choice(("accepted", "none", "declined"))) for i in range(attendees)],
                "show_as": "busy", "is_cancelled": False, "is_online_meeting": bool(random.getrandbits(1)),
                "type": "occurrence" if series else "singleInstance",
                "series_master_id": series[0] if series else None,
                "ical_uid": (series[1] if series else "040000008200E00074C5B7101A82E008") + uuid.uuid4().hex,
                "last_modified": now, "change_key": uuid.uuid4().hex[:16],
                "body": f"SECRET BODY of {event_id[-6:]}: dial-in 555-0100, password hunter2",
                "location": "Room 42, the secret building", "sensitivity": sensitivity,
            }
            self._log(user, event_id)
            return event_id

    def create_series(self, user_id: str, start: datetime, count: int = 3, every_days: int = 1, **kwargs) -> list[str]:
        master = "AAMkMASTER" + uuid.uuid4().hex
        prefix = "040000008200E00074C5B7101A82E009"
        return [self.create(user_id, start + timedelta(days=i * every_days), series=(master, prefix), **kwargs)
                for i in range(count)]

    def update(self, user_id: str, event_id: str, **changes) -> None:
        with self.lock:
            user = self.users[user_id]
            event = user.events[event_id]
            if "move_minutes" in changes:
                delta = timedelta(minutes=changes.pop("move_minutes"))
                changes["start"], changes["end"] = event["start"] + delta, event["end"] + delta
            event.update(changes)
            event["last_modified"] = max(datetime.now(UTC), event["last_modified"] + timedelta(milliseconds=1))
            event["change_key"] = uuid.uuid4().hex[:16]
            self._log(user, event_id)

    def update_series(self, user_id: str, master_id: str, **changes) -> list[str]:
        ids = [e["id"] for e in self.users[user_id].events.values() if e["series_master_id"] == master_id]
        for event_id in ids:
            self.update(user_id, event_id, **changes)
        return ids

    def delete(self, user_id: str, event_id: str) -> None:
        with self.lock:
            user = self.users[user_id]
            user.events.pop(event_id, None)
            self._log(user, event_id)

    def truth(self, user_id: str, start: datetime, end: datetime) -> dict[str, dict]:
        """The user's events overlapping [start, end), as Graph JSON."""
        with self.lock:
            return {e["id"]: self.render(self.users[user_id], e) for e in self.users[user_id].events.values()
                    if e["start"] < end and e["end"] > start}

    # -------------------------------------------------------------- rendering

    def render(self, user: FakeUser, e: dict) -> dict:
        return {
            "@odata.type": "#microsoft.graph.event", "@odata.etag": f'W/"{e["change_key"]}"', "id": e["id"],
            "createdDateTime": graph_time(e["last_modified"]), "lastModifiedDateTime": graph_time(e["last_modified"]),
            "changeKey": e["change_key"], "categories": ["Secret category"], "transactionId": None,
            "originalStartTimeZone": e["tz"], "originalEndTimeZone": e["tz"], "iCalUId": e["ical_uid"],
            "reminderMinutesBeforeStart": 15, "isReminderOn": True, "hasAttachments": True,
            "subject": e["subject"], "bodyPreview": e["body"][:40], "importance": "normal",
            "sensitivity": e["sensitivity"], "isAllDay": e["is_all_day"], "isCancelled": e["is_cancelled"],
            "isOrganizer": e["organizer"][1] == user.mail, "responseRequested": True,
            "seriesMasterId": e["series_master_id"], "showAs": e["show_as"], "type": e["type"],
            "webLink": f"https://outlook.office365.com/owa/?itemid={e['id']}",
            "onlineMeetingUrl": None, "isOnlineMeeting": e["is_online_meeting"],
            "onlineMeetingProvider": "teamsForBusiness" if e["is_online_meeting"] else "unknown",
            "onlineMeeting": {"joinUrl": "https://teams.example/secret-join"} if e["is_online_meeting"] else None,
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": {"contentType": "html", "content": f"<p>{e['body']}</p>"},
            "start": {"dateTime": wall(e["start"]), "timeZone": "UTC"},
            "end": {"dateTime": wall(e["end"]), "timeZone": "UTC"},
            "location": {"displayName": e["location"], "locationType": "default"},
            "locations": [{"displayName": e["location"]}], "recurrence": None,
            "attendees": [
                {"type": kind, "status": {"response": response, "time": "0001-01-01T00:00:00Z"},
                 "emailAddress": {"name": name, "address": address}}
                for name, address, kind, response in e["attendees"]
            ],
            "organizer": {"emailAddress": {"name": e["organizer"][0], "address": e["organizer"][1]}},
        }

    # -------------------------------------------------------------- HTTP

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.requests += 1
            failure = self.failures.popleft() if self.failures else None
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return self._error(status, "TooManyRequests" if status == 429 else "ServiceUnavailable", headers)(
                environ, start_response)
        return self._route(request)(environ, start_response)

    def _route(self, request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        match = re.fullmatch(r"Bearer tok-(.+)", auth)
        if not match or match.group(1) not in self.users:
            return self._error(401, "InvalidAuthenticationToken")
        user_id = match.group(1)
        if user_id in self.gone:
            return self._error(404, "ErrorInvalidUser")
        if request.path == "/v1.0/me":
            user = self.users[user_id]
            return Response(json.dumps({"id": user.id, "mail": user.mail, "displayName": user.name}),
                            content_type="application/json")
        if request.path == f"/v1.0/users/{user_id}/calendars":
            return Response(json.dumps({"value": [{"id": calendar_id(user_id), "name": "Calendar",
                                                   "isDefaultCalendar": True, "canEdit": True,
                                                   "owner": {"name": self.users[user_id].name,
                                                             "address": self.users[user_id].mail}}]}),
                            content_type="application/json")
        if request.path == self._delta_path(user_id):
            return self._delta(request, user_id)
        if re.fullmatch(r"/v1\.0/users/[^/]+/calendars/[^/]+/calendarView/delta", request.path):
            return self._error(404, "ErrorItemNotFound")
        return self._error(404, "ResourceNotFound")

    @staticmethod
    def _delta_path(user_id: str) -> str:
        return f"/v1.0/users/{user_id}/calendars/{calendar_id(user_id)}/calendarView/delta"

    def _delta(self, request: Request, user_id: str) -> Response:
        args = request.args
        with self.lock:
            if "$skiptoken" in args:
                state = _decode(args["$skiptoken"])
            elif "$deltatoken" in args:
                if self.reject_delta_tokens == "always" or self.reject_delta_tokens:
                    if self.reject_delta_tokens != "always":
                        self.reject_delta_tokens -= 1
                    return self._error(410, "syncStateNotFound")
                state = _decode(args["$deltatoken"]) | {"off": 0, "upto": self.seq}
            else:
                start, end = _instant(args.get("startDateTime")), _instant(args.get("endDateTime"))
                if start is None or end is None:
                    return self._error(400, "ErrorInvalidParameter")
                state = {"u": user_id, "since": 0, "upto": self.seq, "ws": start.timestamp(),
                         "we": end.timestamp(), "off": 0}
            if state.get("u") != user_id:
                return self._error(400, "ErrorInvalidParameter")
            size = self._page_size(request.headers.get("Prefer", ""))
            body = self._page(self.users[user_id], state, size)
            self.delta_pages += 1
        if self.page_delay:
            time.sleep(self.page_delay)
        return Response(json.dumps(body), content_type="application/json")

    def _page(self, user: FakeUser, state: dict, size: int) -> dict:
        changed: dict[str, None] = {}
        for seq, event_id in user.log:
            if state["since"] < seq <= state["upto"]:
                changed.pop(event_id, None)
                changed[event_id] = None
        ids = list(changed)
        page_ids = ids[state["off"]:state["off"] + size]
        ws, we = (datetime.fromtimestamp(state[k], UTC) for k in ("ws", "we"))
        value = []
        for event_id in page_ids:
            event = user.events.get(event_id)
            if event is not None and event["start"] < we and event["end"] > ws:
                value.append(self.render(user, event))
            elif state["since"] > 0:
                value.append({"@odata.type": "#microsoft.graph.event", "id": event_id,
                              "@removed": {"reason": "deleted"}})
        base = f"{self.url}{self._delta_path(user.id)}"
        if state["off"] + size < len(ids):
            token = _encode(state | {"off": state["off"] + size})
            return {"value": value, "@odata.nextLink": f"{base}?$skiptoken={token}"}
        token = _encode({"u": state["u"], "since": state["upto"], "ws": state["ws"], "we": state["we"]})
        return {"value": value, "@odata.deltaLink": f"{base}?$deltatoken={token}"}

    def _page_size(self, prefer: str) -> int:
        match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        return min(int(match.group(1)), self.default_page_size) if match else self.default_page_size

    @staticmethod
    def _error(status: int, code: str, headers: dict | None = None) -> Response:
        body = {"error": {"code": code, "message": "fake graph says no", "innerError": {"request-id": "x"}}}
        return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


def calendar_id(user_id: str) -> str:
    """Each fake user has one calendar, their default one."""
    return f"AAMkCAL-{user_id}"


def _encode(state: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _decode(token: str) -> dict:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        return {}


def _instant(text: str | None) -> datetime | None:
    try:
        value = datetime.fromisoformat((text or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def running_fake_graph() -> Iterator[FakeGraph]:
    fake = FakeGraph()
    server = make_server("127.0.0.1", 0, fake, threaded=True)
    fake.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


# ------------------------------------------------------------------ fixtures (a folder's conftest re-exports them)


@pytest.fixture
def fake_graph():
    with running_fake_graph() as fake:
        yield fake


def fake_client(fake, user_id: str, sleep=None) -> GraphClient:
    """A GraphClient acting as ``user_id`` against the fake (its token is ``tok-<user_id>``)."""
    session = requests.Session()
    session.trust_env = False
    return GraphClient(session, f"{fake.url}/v1.0", token=lambda force_refresh=False: f"tok-{user_id}",
                       timeout=5, **({"sleep": sleep} if sleep else {}))


@dataclass
class GraphRoute:
    """How the runtime reaches Graph as a user; a test may swap ``factory`` (a waiting or refusing client)."""

    factory: Callable[[str], GraphClient]


@pytest.fixture
def graph_route(fake_graph) -> GraphRoute:
    return GraphRoute(lambda user_id: fake_client(fake_graph, user_id))


@pytest.fixture
def rt(settings, db, redis_conn, graph_route):
    """The sync tests' runtime: Graph is the loopback fake, through ``graph_route``."""
    runtime = Runtime(settings, db=db, redis_conn=redis_conn, graph_for=lambda user_id: graph_route.factory(user_id))
    install(runtime)
    yield runtime
    install(None)


@pytest.fixture
def connected(rt, fake_graph):
    """connected(user_id) → a user known to the fake Graph and connected in our store."""

    def make(user_id: str = "user-1", mail: str | None = None) -> str:
        mail = mail or f"{user_id}@contoso.example"
        fake_graph.add_user(user_id, mail)
        users.upsert_from_graph(rt.db, {"id": user_id, "mail": mail, "displayName": user_id}, "tenant-1", "home")
        return user_id

    return make


def soon(days: float = 1, hours: float = 10) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hours)
