"""Hypothesis strategies for hostile HTTP requests against every route of the app.

Routes come from ``app.url_map`` at test time, so a route added later is covered without touching the
suite. A drawn ``Attack`` is plain data (method, path, raw query, headers, body bytes) that can be played
through Flask's test client or written on a socket to a real gunicorn.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from service import queues
from service.digest import links
from service.store import events, people, users
from service.store import subscriptions as subscription_store
from service.store.records import Subscription
from tests.support.serving import OPS_TOKEN

# The hardening suites' seeded user and subscription.
USER_ID, EMAIL = "fuzz-user-0001", "fuzz.user@contoso.com"
SUBSCRIPTION_ID, CLIENT_STATE = "aaaaaaaa-1111-4aaa-8aaa-000000000001", "fuzz-client-state-" + "z" * 32

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "get")

# Strings that broke or nearly broke a parser somewhere: Unicode digits, lone surrogates, edges of the
# calendar with offsets, nesting, huge and odd numbers, encodings.
NASTY = [
    "", " ", "0", "-1", "1", "00", "1e3", "1.5", "²", "١٢", "５０", "٣", "9" * 30, "9" * 5000, "NaN", "Infinity",
    "null", "true", "[]", "{}", "\x00", "\ud800", "\udfff", "a\ud83d", "é", "日本語", "\u202e", "%", "%zz",
    "%ED%A0%80", "%C0%AF", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-05:00",
    "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59+05:00", "9999-12-31", "0001-01-01", "2026-02-30",
    "2026-12-01T10:00:00Z", "2026-12-01 10:00:00 05:00", "24:00", "25:61", "-0001-01-01",
    "[" * 3000, "{\"a\":" * 2000, "]" * 50, "\\ud800", "A" * 10000, "active", "failing", "removed",
    "Europe/Paris", "Mars/Olympus", "../../etc/passwd", "<script>alert(1)</script>", "' or 1=1 --",
    '{"$gt": ""}', "after", "before", "DELETE", "on", "off",
]
PARAM_NAMES = [
    "limit", "cursor", "start", "end", "days", "q", "status", "t", "validationToken", "date", "tz", "time",
    "enabled", "send_empty", "kind", "action", "purge", "confirm", "token", "csrf_token", "calendar", "code",
    "state", "error", "error_description", "admin_consent", "tenant", "next", "format", "user", "email",
]
JSON_KEYS = [
    "value", "validationTokens", "subscriptionId", "clientState", "changeType", "lifecycleEvent", "tenantId",
    "resource", "resourceData", "id", "encryptedContent", "people", "email", "emails", "name", "team",
    "assessments", "primary_email", "styles", "data", "dataKey", "dataSignature", "encryptionCertificateId",
]

text = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=["Cs", "Co", "Nd", "No", "Zs", "Cc", "So"]), max_size=12),
)


@dataclass
class Attack:
    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    def __repr__(self) -> str:  # what hypothesis prints for a failing example: short enough to read
        return (f"Attack({self.method} {self.target[:300]!r} headers={ {k: v[:80] for k, v in self.headers.items()} }"
                f" body={self.body[:300]!r}{'...' if len(self.body) > 300 else ''} ({len(self.body)} bytes))")


def _header(value: str) -> str:
    """A header value as a server would see it: the UTF-8 bytes read as latin-1, no line breaks."""
    return value.encode("utf-8", "surrogatepass").decode("latin-1").replace("\r", "").replace("\n", "")


def _quote(value: str) -> str:
    return quote(value, safe="", errors="surrogatepass")


def json_values(keys=JSON_KEYS):
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20, max_value=10**60),
                        st.floats(allow_nan=False, allow_infinity=False), text)
    return st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(keys) | text, children, max_size=5)),
        max_leaves=8)


def notification_like(values):
    """Bodies shaped nearly like a Graph notification collection, wrong in one place or many."""
    item = st.fixed_dictionaries({}, optional={k: values for k in (
        "subscriptionId", "clientState", "changeType", "lifecycleEvent", "tenantId", "resource", "resourceData",
        "encryptedContent")})
    return st.fixed_dictionaries({"value": st.one_of(st.lists(item | values, max_size=4), values)},
                                 optional={"validationTokens": values})


def people_like(values):
    person = st.fixed_dictionaries({}, optional={k: values for k in (
        "email", "emails", "name", "team", "assessments", "id", "primary_email")})
    return st.one_of(person, st.lists(person | values, max_size=4), st.fixed_dictionaries({"people": values}))


VALUES = json_values()
EXTRA_HEADERS = st.dictionaries(st.sampled_from(["X-Forwarded-For", "X-Forwarded-Proto", "Host", "If-Modified-Since",
                                                 "Range", "Accept-Language", "Origin", "Referer", "X-CSRFToken"]),
                                text, max_size=2)
DOCUMENTS = {"json": VALUES, "notification": notification_like(VALUES), "people": people_like(VALUES)}


@st.composite
def bodies(draw, context) -> tuple[bytes, str | None]:
    """(body, content type): JSON of odd shapes, raw JSON tricks, forms with non-ASCII fields, or bytes."""
    kind = draw(st.sampled_from(["none", "json", "notification", "people", "raw", "form", "bytes"]))
    if kind == "none":
        return b"", draw(st.sampled_from([None, "application/json"]))
    if kind in ("json", "notification", "people"):
        document = draw(DOCUMENTS[kind])
        ascii_only = draw(st.booleans())
        encoded = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
        return encoded, "application/json"
    if kind == "raw":
        raw = draw(st.sampled_from([
            "[" * 5000, "{\"value\":" * 3000 + "1", '{"value": [' + "[" * 4000 + "]", "1e99999", "-" + "9" * 5000,
            '{"value": [{"subscriptionId": "x", "lifecycleEvent": [0]}]}', '{"value": [{"subscriptionId": "\\ud800"}]}',
            '{"email": "\\udc00@contoso.com"}', '[{"email": "a\\ud800@x.com", "name": "\\udfff"}]',
            '{"value": [{"subscriptionId": {"$ne": 1}, "clientState": {"$ne": 1}, "changeType": "updated"}]}',
            '{"value": null}', "\ufeff{}", "\x00", '"\\ud800"', "NaN", '{"a": Infinity}', '{"value": [], "value": 1}',
        ]))
        return raw.encode("utf-8", "surrogatepass"), draw(st.sampled_from(["application/json", "text/plain"]))
    if kind == "form":
        fields = draw(context.fields)
        form = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in fields.items())
        if draw(st.booleans()):
            form = form.encode("utf-8", "surrogatepass").decode("latin-1")   # raw non-ASCII bytes, unescaped
        return form.encode("latin-1", "replace"), "application/x-www-form-urlencoded"
    return draw(st.binary(max_size=200)), draw(st.sampled_from([
        None, "application/json", "multipart/form-data; boundary=x", "multipart/form-data", "text/plain; charset=utf-7",
        "application/x-www-form-urlencoded; charset=utf-16", "application/json; charset=latin-1"]))


def attacks(context):
    """Hostile requests against the routes of ``context.rules`` (from the app's url_map)."""
    context.fields = st.dictionaries(st.sampled_from(PARAM_NAMES) | text, text | st.sampled_from(context.tokens),
                                     max_size=5)
    context.params = st.lists(st.tuples(st.sampled_from(PARAM_NAMES) | text, text | st.sampled_from(context.tokens)),
                              max_size=4)
    context.segments = {name: st.sampled_from(values) | text for name, values in context.path_values.items()}
    context.bodies = bodies(context)
    return _attack(context)


@st.composite
def _attack(draw, context) -> Attack:
    rule = draw(st.sampled_from(context.rules))
    path = rule.rule
    for name in sorted(rule.arguments):
        value = draw(context.segments.get(name, text))
        path = path.replace(f"<{name}>", _quote(value) or "x").replace(f"<path:{name}>", _quote(value) or "x")
    known = sorted(m for m in rule.methods if m not in ("HEAD", "OPTIONS"))
    method = draw(st.sampled_from(known) if draw(st.integers(0, 4)) else st.sampled_from(METHODS))
    params = draw(context.params)
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)
    if draw(st.integers(0, 9)) == 0:
        query = draw(st.sampled_from(["%", "%%", "a=%ED%A0%80", "&&&==", "limit=%C2%B2", "=", "a" * 5000]))
    headers = {}
    auth = draw(st.sampled_from(["ops", "ops", "none", "junk", "basic"]))
    if auth == "ops":
        headers["Authorization"] = f"Bearer {context.ops_token}"
    elif auth == "junk":
        headers["Authorization"] = _header(draw(text))
    elif auth == "basic":
        headers["Authorization"] = "Basic Zm9vOmJhcg=="
    session = draw(st.sampled_from(["none", "ops", "user", "junk"]))
    if session != "none":
        headers["Cookie"] = context.cookies[session]
    body, content_type = draw(context.bodies)
    if content_type:
        headers["Content-Type"] = content_type
    if draw(st.booleans()):
        headers["Accept"] = draw(st.sampled_from(["text/html", "application/json", "*/*", "text/html;q=x", "\x7f"]))
    for name, value in draw(EXTRA_HEADERS).items():
        headers[name] = _header(value)
    return Attack(method, path, query, headers, body)


LONG = os.environ.get("CALSYNC_FUZZ") == "long"


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


@dataclass
class Context:
    rules: list
    ops_token: str
    path_values: dict[str, list[str]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    cookies: dict[str, str] = field(default_factory=dict)
