"""``calsync demo``: the whole service end to end on embedded defaults, against the local Graph emulator.

It starts the emulator (HTTPS on loopback) and calsync's web, worker and scheduler in this process,
seeds a small organisation and its people directory, connects two users through the real sign-in flow,
then changes their calendars and shows the changes arriving through webhooks, the store agreeing with
the emulator's truth, the subscriptions operators see, and a daily digest written to the mail sink.
"""

from __future__ import annotations

import logging
import re
import socket
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import requests

from emulator.testing import running_emulator
from service import when
from service.channels import dispatch, teams
from service.cli.context import load_settings
from service.cli.devserver import DevServer, stop_on_signals, wait_until_set
from service.config import DEV_OPS_TOKEN
from service.digest import links, prep
from service.digest.send import deliver
from service.insights.people import import_rows
from service.logs import configure
from service.runtime import Runtime
from service.store import calendars, events
from service.store import channels as channels_store
from service.store import users as users_store

DEMO_ZONE = "America/New_York"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')

PEOPLE = [
    {"email": "ben@contoso.com", "name": "Ben Okafor", "team": "Sales",
     "assessments": {"disc": {"primary": "I", "secondary": "D"}, "enneagram": {"type": "7", "wing": "8"}}},
    {"email": "chloe@contoso.com", "aliases": ["chloe.martin@contoso.com"], "name": "Chloe Martin", "team": "Finance",
     "assessments": {"disc": {"primary": "C", "secondary": "S"}, "enneagram": {"type": "5", "wing": "6"}}},
    {"email": "dev@contoso.com", "name": "Dev Patel", "team": "Engineering",
     "assessments": {"disc": {"primary": "D", "secondary": "I"}, "enneagram": {"type": "3", "wing": "4"}}},
    {"email": "ana@contoso.com", "name": "Ana Silva", "team": "Product",
     "assessments": {"disc": {"primary": "S", "secondary": "C"}, "enneagram": {"type": "2", "wing": "1"}}},
]


class DemoFailed(RuntimeError):
    pass


def browser_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def start_connect(base_url: str, session: requests.Session, time_zone: str = "") -> str:
    """GET /connect then POST it (CSRF token, browser time zone); returns the authorize URL we were sent to."""
    page = session.get(f"{base_url}/connect", timeout=10)
    match = CSRF_FIELD.search(page.text)
    if page.status_code != 200 or match is None:
        raise DemoFailed(f"GET /connect answered {page.status_code} without a form")
    started = session.post(f"{base_url}/connect", data={"csrf_token": match.group(1), "tz": time_zone},
                           allow_redirects=False, timeout=30)
    if started.status_code != 303:
        raise DemoFailed(f"POST /connect answered {started.status_code}, expected a redirect")
    return started.headers["Location"]


def sign_in_at_emulator(control, authorize_url: str, emulated_user_id: str, accept: bool = True) -> str:
    """Complete the emulator's sign-in page as the user would; returns the redirect URL (our callback)."""
    done = control.request("POST", "/identity/sign-in", {
        "url": authorize_url, "user_id": emulated_user_id, "action": "accept" if accept else "cancel"})
    return done["redirect_url"]


def connect_via_emulator(base_url: str, control, emulated_user_id: str, time_zone: str = "") -> requests.Session:
    """The real connect flow without a browser; returns the session, signed in to calsync as that user."""
    session = browser_session()
    callback = session.get(sign_in_at_emulator(control, start_connect(base_url, session, time_zone),
                                               emulated_user_id), timeout=30)
    if callback.status_code != 200 or "Your calendar is connected" not in callback.text:
        raise DemoFailed(f"/auth/callback answered {callback.status_code}")
    return session


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise DemoFailed(f"timed out waiting for {what}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graph_event(subject: str, start: datetime, minutes: int, attendees: list[str], **extra) -> dict:
    zone = "Eastern Standard Time"
    local = start.astimezone(ZoneInfo(DEMO_ZONE)).replace(tzinfo=None)
    return {
        "subject": subject,
        "body": {"contentType": "html", "content": f"<p>Private agenda for {subject}</p>"},
        "start": {"dateTime": local.isoformat(), "timeZone": zone},
        "end": {"dateTime": (local + timedelta(minutes=minutes)).isoformat(), "timeZone": zone},
        "attendees": [{"emailAddress": {"address": a, "name": a.split("@")[0].title()}, "type": "required"}
                      for a in attendees],
        **extra,
    }


@dataclass
class Demo:
    rt: object
    emulator: object
    url: str
    ana_id: str = ""

    def say(self, text: str) -> None:
        click.echo(text)

    def seed(self) -> dict:
        control = self.emulator.control
        tenant = control.create_tenant(display_name="Contoso")
        users = {}
        for person in PEOPLE:
            users[person["email"]] = control.create_user(
                tenant_id=tenant["id"], mail=person["email"], display_name=person["name"],
                time_zone="Eastern Standard Time")
        summary = import_rows(self.rt.db, enumerate(PEOPLE, start=1))
        self.say(f"   people directory: {when.count(summary.created, 'person', 'people')} added"
                 + (f", {len(summary.rejected)} refused" if summary.rejected else ""))
        today = datetime.now(ZoneInfo(DEMO_ZONE)).replace(hour=9, minute=0, second=0, microsecond=0)
        ana = users["ana@contoso.com"]["id"]
        control.create_events(ana, [
            _graph_event("Quarterly planning", today, 60, ["ben@contoso.com", "chloe@contoso.com", "dev@contoso.com"]),
            _graph_event("1:1 Ana / Dev", today + timedelta(hours=2), 30, ["dev@contoso.com"],
                         recurrence={"pattern": {"type": "weekly", "interval": 1,
                                                 "daysOfWeek": [today.strftime("%A").lower()]},
                                     "range": {"type": "numbered", "startDate": today.date().isoformat(),
                                               "numberOfOccurrences": 8}}),
            _graph_event("Budget review", today + timedelta(hours=5), 45,
                         ["chloe.martin@contoso.com", "external@fabrikam.com", "procurement@fabrikam.com"]),
            _graph_event("Customer call", today + timedelta(days=1, hours=1), 30, ["ben@contoso.com"]),
        ])
        ben = users["ben@contoso.com"]["id"]
        control.create_events(ben, [_graph_event("Pipeline review", today + timedelta(hours=3), 30,
                                                 ["dev@contoso.com"])])
        return users

    def stored_matches_truth(self, user_id: str) -> tuple[int, int, bool]:
        """(stored, truth, equal?) over the windows of the user's calendars, comparing ids and change keys."""
        read = [c for c in calendars.enabled_for_user(self.rt.db, user_id) if c.window_start and c.window_end]
        if not read:
            return 0, -1, False
        iso = "%Y-%m-%dT%H:%M:%SZ"
        truth = [e for c in read for e in self.emulator.control.calendar(
            user_id, c.window_start.strftime(iso), c.window_end.strftime(iso), calendar_id=c.calendar_id)]
        stored = {e["graph_id"]: e.get("change_key") for e in events.for_user(self.rt.db, user_id)}
        expected = {e["id"]: e.get("changeKey") for e in truth if not e.get("isCancelled")}
        cancelled = {e["id"] for e in truth if e.get("isCancelled")}
        equal = {k: v for k, v in stored.items() if k not in cancelled} == expected
        return len(stored), len(truth), equal

    def run(self) -> None:
        self.say("1. Seeding the emulator (a tenant, 4 people, a week of meetings) and the people directory")
        users = self.seed()
        ana, ben = users["ana@contoso.com"]["id"], users["ben@contoso.com"]["id"]
        self.ana_id = ana

        self.say("2. Ana and Ben connect their calendars (the real sign-in: /connect, the emulator, /auth/callback)")
        for person in (ana, ben):
            connect_via_emulator(self.url, self.emulator.control, person, DEMO_ZONE).close()
        subs = wait_for("subscriptions", lambda: len(self.emulator.control.subscriptions()) >= 2 and
                        self.emulator.control.subscriptions())
        self.say(f"   {when.count(len(subs), 'Graph subscription')} created "
                 "(Graph's validation handshakes answered by /webhooks/graph)")
        for person, name in ((ana, "Ana"), (ben, "Ben")):
            stored, truth, _ = wait_for(f"{name}'s backfill", lambda p=person: (r := self.stored_matches_truth(p))[2]
                                        and r)
            self.say(f"   {name}: backfill stored {when.count(stored, 'event')}, as many as the emulator holds "
                     f"({truth})")

        self.say("3. Ana's calendar changes in Microsoft 365: a notification, the webhook, a sync")
        control = self.emulator.control
        now = datetime.now(ZoneInfo(DEMO_ZONE))
        started = time.monotonic()
        created = control.create_event(ana, _graph_event("Design critique", now + timedelta(hours=1), 30,
                                                          ["ben@contoso.com", "dev@contoso.com"]))
        planning = next(e for e in control.calendar(ana, *self._window()) if e["subject"] == "Customer call")
        control.update_event(ana, planning["id"], {"subject": "Customer call (moved)"})
        moved = planning["id"]
        wait_for("the changes to be stored", lambda: events.get(self.rt.db, ana, created["id"]) and (
            events.get(self.rt.db, ana, moved) or {}).get("subject") == "Customer call (moved)")
        self.say(f"   both changes stored {time.monotonic() - started:.1f} s after they were made; "
                 f"{when.count(len(control.deliveries()), 'webhook delivery', 'webhook deliveries')} so far")
        stored, truth, equal = self.stored_matches_truth(ana)
        self.say(f"   Ana: {when.count(stored, 'event')} stored, {truth} in Graph: "
                 f"{'identical' if equal else 'DIFFERENT'}")
        bodies = events.count_holding(self.rt.db, ("body", "bodyPreview", "uniqueBody"))
        self.say(f"   stored documents holding an event body: {bodies}")

        self.say("4. Ana's daily digest (exactly once per local day; written to the dev mail sink)")
        self.digest(ana)

        self.say("5. Ana's meeting prep as a Slack DM, Ben's as a Teams card (both recorded by the emulator)")
        self.chat_channels(ana, ben, users)

        self.say("6. What operators see (times in UTC)")
        health = requests.get(f"{self.url}/ops/api/health", timeout=10,
                              headers={"Authorization": f"Bearer {self.rt.settings.ops_token}"}).json()
        for row in health["subscriptions"]:
            expires = datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00"))
            last = row["last_notification_at"]
            seen = when.moment(datetime.fromisoformat(last.replace("Z", "+00:00")), "UTC") if last else "none yet"
            self.say(f"   {row['user_email']}: subscription {row['status']}, expires "
                     f"{when.moment(expires, 'UTC')}, last notification {seen}")
        waiting = [f"{q['queue']} {q['queued']}" for q in health["queues"] if q["queued"]]
        self.say(f"   jobs waiting: {', '.join(waiting) if waiting else 'none'}")

    def digest(self, ana: str) -> None:
        """Send today's digest (twice: the second finds it handled), or say why today gets none."""
        rt = self.rt
        user = users_store.get(rt.db, ana)
        local = datetime.now(ZoneInfo(DEMO_ZONE)).date()
        first, again = (deliver(rt.db, rt.settings, rt.mailer, ana, local.isoformat()) for _ in range(2))
        if first == "skipped:not-a-digest-day":
            self.say(f"   none today: {local:%A}s are not among Ana's digest days ({when.weekdays(user.digest.days)}); "
                     "the digest page below is a preview that says so")
        else:
            self.say(f"   {first.replace(':', ': ').replace('-', ' ')}; asked again: {again.replace('-', ' ')}")
        sink = rt.settings.path("mail")
        newest = max(sink.glob("*.eml"), default=None, key=lambda p: p.stat().st_mtime) if sink.exists() else None
        if newest and first == "sent":
            self.say(f"   the mail: {newest.resolve()}")

    def chat_channels(self, ana: str, ben: str, users: dict) -> None:
        """Contoso installs the Slack app and consents to the Teams install; each person's next prep goes there."""
        control, rt = self.emulator.control, self.rt
        control.request("POST", "/slack/workspaces", {"name": "Contoso", "emails": [p["email"] for p in PEOPLE]})
        control.request("POST", "/slack/config", {"interactivity_url": f"{self.url}/channels/slack/interactivity"})
        session = browser_session()
        session.verify = self.emulator.ca_bundle
        session.get(f"{self.url}/channels/slack/install?t={links.settings_token(rt.settings, ana)}", timeout=30)
        control.request("POST", "/teams/config", {"messaging_endpoint": f"{self.url}/channels/teams/messages",
                                                  "bot_app_id": rt.settings.bot_id})
        control.request("POST", "/identity/apps", {
            "client_id": rt.settings.client_id, "client_secret": rt.settings.client_secret,
            "redirect_uris": [f"{self.url}/auth/callback", f"{self.url}/admin/consent/callback"],
            "roles": ["Calendars.Read", teams.ROLE]})
        tenant = users["ana@contoso.com"]["tenant_id"]
        consent = (f"{self.emulator.base_url}/{tenant}/adminconsent?client_id={rt.settings.client_id}"
                   f"&redirect_uri={self.url}/admin/consent/callback&state=demo")
        browser_session().get(sign_in_at_emulator(control, consent, ana), timeout=30)
        rt.app_tokens.forget(tenant)
        channels_store.set_choice(rt.db, ana, {"prep": ["slack"]})
        channels_store.set_choice(rt.db, ben, {"prep": ["teams"]})
        for person, subject in ((ana, "Quarterly planning"), (ben, "Pipeline review")):
            event = next(e for e in events.for_user(rt.db, person) if e.get("subject") == subject)
            start = event["start"] if event["start"].tzinfo else event["start"].replace(tzinfo=UTC)
            result = prep.deliver(rt.db, rt.settings, rt.mailer, person, event.get("ical_uid") or event["graph_id"],
                                  start.isoformat(), now=start - timedelta(minutes=15), rt=rt)
            sent = (rt.db.preps_sent.find_one({"user_id": person}) or {}).get("channels")
            used = ", ".join(dispatch.NAMES[c] for c, r in (sent or {}).items() if r == "sent")
            self.say(f"   {subject}: {result.replace(':', ': ')}" + (f" on {used}" if used else ""))
        where = self.emulator.base_url + "/_emulator"
        self.say(f"   Slack DMs: GET {where}/slack/messages; Teams activities: GET {where}/teams/activities "
                 f"(header Authorization: Bearer {self.emulator.control_secret})")

    def links(self, ana: str) -> list[tuple[str, str]]:
        """Where to look: Ana's pages (signed links, as her mails carry) and the operators'."""
        settings = self.rt.settings
        meeting = next((e for e in events.for_user(self.rt.db, ana) if e.get("subject") == "Quarterly planning"), None)
        found = [("Ana's page", links.home_url(settings, ana)), ("Ana's settings", links.settings_url(settings, ana))]
        if meeting is not None:
            meeting = events.get(self.rt.db, ana, meeting["graph_id"])
            found.append(("A meeting dashboard", links.dashboard_url(settings, str(meeting["_id"]), ana,
                                                                    meeting["graph_id"])))
        found.append(("Ana's digest for today, as a page", links.preview_url(settings, ana)))
        found.append(("Operators", f"{self.url}/ops/"))
        found.append(("Ana, as operators see her", f"{self.url}/ops/users/ana@contoso.com"))
        found.append(("The home page", f"{self.url}/"))
        return found

    def _window(self) -> tuple[str, str]:
        now = datetime.now(UTC)
        iso = "%Y-%m-%dT%H:%M:%SZ"
        return (now - timedelta(days=7)).strftime(iso), (now + timedelta(days=35)).strftime(iso)


def run_demo(port: int, once: bool) -> None:
    base = load_settings()
    if base.env == "prod":
        raise click.UsageError("calsync demo runs against the local emulator; it refuses CALSYNC_ENV=prod")
    port = port or _free_port()
    with running_emulator(Path(base.data_dir) / "emulator", seed=7) as emu:
        settings = base.with_overrides(public_url=f"http://127.0.0.1:{port}", **emu.settings_overrides())
        configure(settings)
        for name in ("", "werkzeug"):  # the demo narrates; keep the log to problems
            logging.getLogger(name).setLevel(logging.WARNING)
        rt = Runtime(settings)
        server = DevServer(rt, port=port)
        server.start()
        url = f"http://127.0.0.1:{server.port}"
        click.echo(f"calsync demo: web on {url}, Graph emulator on {emu.base_url}\n")
        try:
            demo = Demo(rt, emu, url)
            demo.run()
            click.echo("\nLook around (the links are signed, as in Ana's mails; no sign-in needed):")
            for label, link in demo.links(demo.ana_id):
                click.echo(f"  {label + ':':36} {link}")
            token = DEV_OPS_TOKEN if settings.ops_token == DEV_OPS_TOKEN else "the CALSYNC_OPS_TOKEN you set"
            click.echo(f"  {'Operators sign in with:':36} {token}")
            click.echo("\n" + textwrap.fill(
                f"About the certificate warning: the home page's Connect button sends your browser to the emulator's "
                f"sign-in page at {emu.base_url}. Its certificate comes from the emulator's own test authority "
                f"({Path(emu.ca_bundle).resolve()}), which your browser does not know, so it warns once before "
                "that page: expected here. Import that file as a trusted authority in the browser's certificate "
                "settings to make the warning go away. The links above need no sign-in.", width=100))
            if not once:
                stop = stop_on_signals()
                click.echo("\nServing until Ctrl-C.")
                wait_until_set(stop)
                click.echo("\nStopping calsync and the emulator...", nl=False)
        finally:
            server.stop()
            rt.close()
    if not once:
        click.echo(" done. The demo's data was in memory and is gone; its mails stay in "
                   f"{settings.path('mail').resolve()}.")


def register(cli) -> None:
    @cli.command()
    @click.option("--port", default=8000, show_default=True, help="Web port (0 picks a free one).")
    @click.option("--once", is_flag=True, help="Run the scenario, print what happened, and exit.")
    def demo(port: int, once: bool) -> None:
        """Run calsync end to end on embedded defaults against the local Graph emulator."""
        try:
            run_demo(port, once)
        except DemoFailed as exc:
            raise click.ClickException(f"demo failed: {exc}") from None
