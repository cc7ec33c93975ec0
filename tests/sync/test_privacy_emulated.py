"""Privacy end to end against the emulator on the wire server: a private meeting synced from Graph keeps its
subject out of the store, the pages, the API and the logs; a user keeps a meeting out of insights from its
dashboard; and a signed-in user downloads what calsync holds, then deletes it all, Graph subscriptions
first."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from service.digest import links
from service.store import events as events_store
from service.store import exclusions
from tests.support.connect import connect_session, emulated_user

SECRET = "Acquisition of Fabrikam"


def body(subject: str, hours_from_now: int, sensitivity: str = "normal") -> dict:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=hours_from_now)
    end = start + timedelta(minutes=30)
    return {"subject": subject, "sensitivity": sensitivity, "body": {"contentType": "text", "content": "agenda"},
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "attendees": [{"type": "required", "emailAddress": {"address": "ben@contoso.com", "name": "Ben"}}]}


def csrf_token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_a_private_meeting_from_graph_never_shows_its_subject(stack, ops_headers, caplog):
    caplog.set_level(logging.DEBUG)
    ana = emulated_user(stack, mail="ana@contoso.com")
    control = stack.emulator.control
    projects = control.create_calendar(ana["id"], "Projects")
    control.create_events(ana["id"], [body(SECRET, 26, "private"), body("Weekly sync", 28)])
    control.create_events(ana["id"], [body("Board prep", 30, "confidential")], calendar_id=projects["id"])
    user_id, session = connect_session(stack, ana["id"])
    stack.run_jobs()

    db = stack.runtime.db
    stored = {doc["graph_id"]: doc for doc in db.events.find({"user_id": user_id})}
    assert len(stored) == 3
    private = [doc for doc in stored.values() if doc["sensitivity"] in ("private", "confidential")]
    assert len(private) == 2 and all(doc["subject"] is None for doc in private)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), (day + timedelta(days=3)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    listed = session.get(f"{stack.url}/api/users/{user_id}/meetings?start={start}&end={end}", headers=ops_headers,
                         timeout=10).json()["items"]
    assert sorted(m["subject"] for m in listed) == ["Private meeting", "Private meeting", "Weekly sync"]
    doc = private[0]
    page = session.get(links.dashboard_url(stack.settings, str(doc["_id"]), user_id, doc["graph_id"]), timeout=10)
    assert page.status_code == 200 and "Private meeting" in page.text
    seen = [page.text, json.dumps(listed), caplog.text, repr(list(db.events.find({})))]
    assert not [text for text in seen if SECRET in text or "Board prep" in text or "agenda" in text]


def test_a_user_keeps_a_meeting_out_then_downloads_and_deletes_everything(stack):
    ana = emulated_user(stack, mail="ana@contoso.com")
    control = stack.emulator.control
    control.create_events(ana["id"], [body("Weekly sync", 26), body("Retro", 28)])
    user_id, session = connect_session(stack, ana["id"])
    stack.run_jobs()
    db = stack.runtime.db
    retro = db.events.find_one({"user_id": user_id, "subject": "Retro"})

    # Keep the retro out of insights from its dashboard's form (the form carries the signed token).
    dashboard = links.dashboard_url(stack.settings, str(retro["_id"]), user_id, retro["graph_id"])
    token = parse_qs(urlsplit(dashboard).query)["t"][0]
    kept_out = session.post(f"{stack.url}/meetings/{retro['_id']}/exclude",
                            data={"t": token, "kind": exclusions.MEETING, "action": "exclude"}, timeout=10)
    assert kept_out.status_code == 200 and "Use this meeting in insights again" in kept_out.text
    assert exclusions.for_user(db, user_id).covers(retro)

    export = session.get(f"{stack.url}/connections/me/data", timeout=30)
    assert export.status_code == 200
    held = export.json()
    assert {e["subject"] for e in held["events"]} == {"Weekly sync", "Retro"}
    assert "token" not in json.dumps(held).lower().replace("csrf_token", "")
    mine = [s for s in control.subscriptions() if s["status"] == "active" and user_id in s["resource"]]
    assert mine

    page = session.get(f"{stack.url}/connections/me", timeout=10).text
    deleted = session.post(f"{stack.url}/connections/me/delete", data={"csrf_token": csrf_token(page),
                                                                       "confirm": "DELETE"}, timeout=30)
    stack.run_jobs()

    assert deleted.status_code == 200
    assert not [s for s in control.subscriptions() if s["status"] == "active" and user_id in s["resource"]]
    for collection in ("users", "events", "calendars", "exclusions", "digests_sent", "tokens", "subscriptions"):
        assert not [d for d in db[collection].find({}) if user_id in (d.get("_id"), d.get("user_id"))], collection
    assert events_store.for_user(db, user_id) == []
    # A late notification for the deleted user syncs nothing back.
    control.create_events(ana["id"], [body("After the delete", 30)])
    stack.run_jobs()
    assert db.events.count_documents({"user_id": user_id}) == 0
