"""A seeded calsync for the hostile-input suites: one connected user with a subscription, an event and a
person, so that requests with valid ids, tokens and sessions reach deep into the views."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from service import create_app
from service.digest import links
from service.runtime import Runtime
from service.store import events, people, users
from service.store import subscriptions as subscription_store
from service.store.records import Subscription
from service.workers import queues
from tests.conftest import OPS_TOKEN

LONG = os.environ.get("CALSYNC_FUZZ") == "long"
USER_ID, EMAIL = "fuzz-user-0001", "fuzz.user@contoso.com"
SUBSCRIPTION_ID, CLIENT_STATE = "aaaaaaaa-1111-4aaa-8aaa-000000000001", "fuzz-client-state-" + "z" * 32


@dataclass
class Context:
    rules: list
    ops_token: str
    path_values: dict[str, list[str]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    cookies: dict[str, str] = field(default_factory=dict)


class Tracebacks(logging.Handler):
    """Collects every record that carries a traceback or is logged at ERROR and above."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR or "Traceback" in record.getMessage():
            self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@pytest.fixture
def tracebacks():
    handler = Tracebacks()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def seed(db) -> dict:
    now = datetime.now(UTC)
    users.upsert_from_graph(db, {"id": USER_ID, "mail": EMAIL, "displayName": "Fuzz User"}, "tenant-1", "home-1")
    subscription_store.replace_for_user(db, Subscription(
        id=SUBSCRIPTION_ID, user_id=USER_ID, client_state=CLIENT_STATE, tenant_id="tenant-1",
        resource=f"users/{USER_ID}/events", expires_at=now + timedelta(days=3)))
    start = now.replace(microsecond=0) + timedelta(hours=2)
    events.apply_changes(db, USER_ID, [{
        "id": "AAMkFuzzEvent1", "subject": "Fuzz sync", "lastModifiedDateTime": now.isoformat(),
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
        "organizer": {"emailAddress": {"name": "Fuzz User", "address": EMAIL}},
        "attendees": [{"emailAddress": {"name": "Pat", "address": "pat@contoso.com"}, "type": "required",
                       "status": {"response": "accepted"}}],
        "iCalUId": "ical-fuzz-1", "type": "singleInstance", "sensitivity": "normal", "showAs": "busy",
    }], now, calendar_id="cal-1")
    person = people.create(db, {"name": "Pat", "primary_email": "pat@contoso.com", "emails": ["pat@contoso.com"]})
    event = db.events.find_one({"user_id": USER_ID})
    return {"event_key": str(event["_id"]), "graph_id": "AAMkFuzzEvent1", "person_id": person["_id"]}


@pytest.fixture
def fuzz_app(settings, db, redis_conn):
    """The production app (TESTING off: an uncaught error is a 500 and a logged traceback, as under gunicorn)."""
    rt = Runtime(settings, db=db, redis_conn=redis_conn)
    app = create_app(runtime=rt)
    return app, make_context(app, settings, seed(db))


def make_context(app, settings, seeded: dict) -> Context:
    """Routes, ids, signed tokens and session cookies that ``app`` (or a server with its settings) accepts."""
    serializer = app.session_interface.get_signing_serializer(app)
    raw_csrf = "f" * 40
    form_csrf = URLSafeTimedSerializer(settings.secret_key, salt="wtf-csrf-token").dumps(raw_csrf)
    return Context(
        rules=sorted(app.url_map.iter_rules(), key=lambda r: r.rule),
        ops_token=OPS_TOKEN,
        path_values={
            "key": [USER_ID, EMAIL, seeded["event_key"], seeded["person_id"], "pat@contoso.com"],
            "user_id": [USER_ID], "name": list(queues.ALL), "filename": ["x.css", "../secret"],
        },
        tokens=[form_csrf, links.settings_token(settings, USER_ID),
                links.dashboard_token(settings, USER_ID, seeded["graph_id"]), SUBSCRIPTION_ID, CLIENT_STATE,
                OPS_TOKEN],
        cookies={
            "ops": f"calsync_session={serializer.dumps({'ops': True, 'csrf_token': raw_csrf})}",
            "user": f"calsync_session={serializer.dumps({'user_id': USER_ID, 'csrf_token': raw_csrf})}",
            "junk": "calsync_session=eyJ\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
        },
    )
