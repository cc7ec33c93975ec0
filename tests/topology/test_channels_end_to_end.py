"""Each channel end to end over the Procfile topology: release, gunicorn, an rq worker and the scheduler as
separate processes on the MongoDB wire server, real Redis and the emulator.

A person connects through the real sign-in (a zone where it is midday, so no digest is due), their admin
consents to installing calsync's Teams app, they install the Slack app through calsync's pages, and choose
Teams and Slack for meeting preps, 5 minutes ahead. A meeting then appears in Graph: its notification is
synced, and at the prep's minute the scheduler's tick sends the card to Teams and the DM to Slack, not
before. "Exclude this meeting" pressed in Teams (an invoke activity with an emulator-issued Bot Framework
JWT) excludes it in the store; pressed in Slack too (a signed interactivity request), nothing more changes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from harness.waiting import wait_until
from service.config import Settings
from service.digest import links
from service.store import channels as channels_store
from tests.support.clock import midday_zone
from tests.support.connect import connect_user, emulated_user, sign_in_at_emulator
from tests.support.factories import add_people
from tests.support.tenant_admin import GLOBAL_ADMIN
from tests.support.topology import procfile_topology, ready

ROOT = Path(__file__).resolve().parents[2]
INSTALL_ROLE = "TeamsAppInstallation.ReadWriteSelfForUser.All"
LEAD = 5                                   # the person's prep minutes (the shortest calsync allows)
EXCLUDE = "Exclude this meeting"


def channel_env(emulator) -> dict[str, str]:
    overrides = emulator.settings_overrides()
    return {"CALSYNC_TEAMS_SERVICE_URL": overrides["teams_service_url"],
            "CALSYNC_BOTFRAMEWORK_JWKS_URL": overrides["botframework_jwks_url"],
            "CALSYNC_SLACK_API_URL": overrides["slack_api_url"],
            "CALSYNC_SLACK_AUTHORIZE_URL": overrides["slack_authorize_url"],
            "CALSYNC_SLACK_CLIENT_ID": overrides["slack_client_id"],
            "CALSYNC_SLACK_CLIENT_SECRET": overrides["slack_client_secret"],
            "CALSYNC_SLACK_SIGNING_SECRET": overrides["slack_signing_secret"]}


def graph_time(moment: datetime) -> dict:
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


@pytest.mark.slow
@pytest.mark.wire
def test_a_graph_change_becomes_a_teams_card_and_a_slack_dm_at_the_prep_minute_and_a_press_excludes_it(
        tmp_path, emulator, mongodb_uri, redis_url, smtp_inbox, db):
    topology, stack = procfile_topology(tmp_path, emulator, mongodb_uri, redis_url, smtp_inbox, **channel_env(emulator))
    url, control = stack.url, emulator.control
    settings = Settings()                      # the processes' dev client id, bot id and secret key
    control.request("POST", "/teams/config", {"messaging_endpoint": f"{url}/channels/teams/messages",
                                              "bot_app_id": settings.bot_id})
    control.request("POST", "/slack/config", {"interactivity_url": f"{url}/channels/slack/interactivity"})
    try:
        released = topology.release()
        assert released.returncode == 0, released.stderr[-2000:]
        for kind in ("web", "worker", "scheduler"):
            topology.start(kind, 1)
        wait_until(lambda: ready(url), timeout=60, message="gunicorn")

        tenant = control.create_tenant(display_name="Contoso")["id"]
        me = emulated_user(stack, mail="morgan@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
        control.request("POST", "/identity/apps", {
            "client_id": settings.client_id, "client_secret": settings.client_secret,
            "redirect_uris": [f"{url}/auth/callback", f"{url}/admin/consent/callback"],
            "roles": ["Calendars.Read", INSTALL_ROLE]})
        consent = (f"{emulator.base_url}/{tenant}/adminconsent?client_id={settings.client_id}"
                   f"&redirect_uri={url}/admin/consent/callback&state=s")
        assert "admin_consent=True" in sign_in_at_emulator(stack, consent, me["id"])
        user_id = connect_user(stack, me["id"], time_zone=midday_zone())
        add_people(db, [{"email": "ana@example.com", "name": "Ana", "team": "Sales",
                         "assessments": {"disc": {"primary": "D"}}}])

        control.request("POST", "/slack/workspaces", {"name": "Contoso", "emails": [me["mail"]]})
        session = requests.Session()
        session.verify, session.trust_env = emulator.ca_bundle, False
        installed = session.get(f"{url}/channels/slack/install?t={links.settings_token(settings, user_id)}")
        assert installed.status_code == 200, installed.text[-500:]
        assert channels_store.workspace_for_tenant(db, tenant) is not None
        channels_store.set_choice(db, user_id, {"prep": [channels_store.TEAMS, channels_store.SLACK]})
        db.users.update_one({"_id": user_id}, {"$set": {"prep.minutes": LEAD}})

        # The prep's minute: the first whole minute at least 45 s from now (time for the change to be notified and
        # synced first), whatever the date and hour.
        due = (datetime.now(UTC) + timedelta(seconds=105)).replace(second=0, microsecond=0)
        start = due + timedelta(minutes=LEAD)
        control.create_event(me["id"], {
            "subject": "Quarterly planning", "start": graph_time(start),
            "end": graph_time(start + timedelta(minutes=30)),
            "attendees": [{"emailAddress": {"address": "ana@example.com", "name": "Ana"}, "type": "required"}]})
        wait_until(lambda: db.events.find_one({"user_id": user_id, "subject": "Quarterly planning"}), timeout=60,
                   interval=0.5, message="the Graph change, notified and stored")

        def cards() -> list[dict]:
            return control.request("GET", "/teams/activities")["value"]

        def dms() -> list[dict]:
            return control.request("GET", "/slack/messages")["value"]

        wait_until(lambda: time.time() >= due.timestamp() - 3, timeout=180, interval=0.5,
                   message="just before the prep's minute")
        assert cards() == [] and dms() == [], "a prep went out before its minute"
        wait_until(lambda: cards() and dms(), timeout=120, interval=0.5, message="the prep on Teams and Slack")
        (card,), (dm,) = cards(), dms()
        assert due.timestamp() <= float(dm["ts"]) < due.timestamp() + 45, (due, dm["ts"])   # the minute, not the next
        assert "Quarterly planning" in str(card["activity"]) and "Quarterly planning" in str(dm["blocks"])

        body = card["activity"]["attachments"][0]["content"]["body"]
        action = next(a for b in body if b["type"] == "ActionSet" for a in b["actions"] if a["title"] == EXCLUDE)
        pressed = control.request("POST", "/teams/press", {"activity_id": card["id"], "verb": action["verb"],
                                                           "data": action["data"]})
        assert pressed["status"] == 200 and pressed["body"]["statusCode"] == 200, pressed
        assert db.exclusions.count_documents({"user_id": user_id}) == 1

        button = next(e["action_id"] for b in dm["blocks"] if b["type"] == "actions" for e in b["elements"]
                      if e["text"]["text"] == EXCLUDE)
        again = control.request("POST", "/slack/press", {"ts": dm["ts"], "action_id": button})
        assert again["status"] == 200, again
        assert db.exclusions.count_documents({"user_id": user_id}) == 1
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{topology.tail()}") from None
    finally:
        leftovers = topology.stop()
    assert leftovers == [], leftovers
