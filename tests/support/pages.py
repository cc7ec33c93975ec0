"""Every page calsync serves, with data behind it: a seeded organisation (a connected user with a week of
meetings, a people directory, an exclusion, digest and prep records, an activity log, a failing webhook endpoint)
and the URLs that show it, for the accessibility run and the screenshots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.digest import links
from service.insights import tips
from service.insights.people import import_rows
from service.store import activity, coaching, exclusions, users
from tests.support.factories import add_event, add_user, attendee

PEOPLE = [
    {"email": "ana@contoso.com", "name": "Ana Silva", "team": "Product",
     "assessments": {"disc": {"primary": "S", "secondary": "C"}, "enneagram": {"type": "2", "wing": "1"}}},
    {"email": "ben@contoso.com", "name": "Ben Okafor", "team": "Sales",
     "assessments": {"disc": {"primary": "I", "secondary": "D"}, "enneagram": {"type": "7", "wing": "8"}}},
    {"email": "chloe@contoso.com", "name": "Chloe Martin", "team": "Finance",
     "assessments": {"disc": {"primary": "C", "secondary": "S"}, "enneagram": {"type": "5", "wing": "6"}}},
    {"email": "dev@contoso.com", "name": "Dev Patel", "team": "Engineering",
     "assessments": {"disc": {"primary": "D", "secondary": "I"}}},
]


@dataclass
class Page:
    name: str
    url: str                 # absolute, or a path under the server
    operator: bool = False   # needs the operator's session
    status: int = 200


@dataclass
class Seeded:
    user_id: str
    meeting_key: str
    meeting_graph_id: str
    endpoint_id: str


def seed(db, now: datetime | None = None) -> Seeded:
    """Ana's organisation as the demo leaves it, with a little history."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    user = add_user(db, user_id="ana-id", email="ana@contoso.com", name="Ana Silva", time_zone="Europe/Paris")
    import_rows(db, enumerate(PEOPLE, start=1))
    start = now + timedelta(hours=2)
    planning = add_event(db, user.id, "g-planning", start, start + timedelta(hours=1), subject="Quarterly planning",
                         organizer={"name": "Ana Silva", "email": "ana@contoso.com"},
                         attendees=[attendee("ana@contoso.com", "Ana Silva"),
                                    attendee("ben@contoso.com", "Ben Okafor"),
                                    attendee("chloe@contoso.com", "Chloe Martin"),
                                    attendee("dev@contoso.com", "Dev Patel"),
                                    attendee("external@fabrikam.com", "External"),
                                    attendee("jane.doe@fabrikam.com", "Jane Doe"),
                                    attendee("room4@contoso.com", "Room 4", type_="resource")])
    ana = {"name": "Ana Silva", "email": "ana@contoso.com"}
    add_event(db, user.id, "g-one", start + timedelta(hours=2), start + timedelta(hours=2, minutes=30),
              subject="1:1 Ana / Dev", attendees=[attendee("dev@contoso.com", "Dev Patel")], online=True, organizer=ana)
    add_event(db, user.id, "g-budget", start + timedelta(days=1), start + timedelta(days=1, minutes=45),
              subject="Budget review", attendees=[attendee("chloe@contoso.com", "Chloe Martin")], organizer=ana)
    add_event(db, user.id, "g-kept", start + timedelta(days=2), start + timedelta(days=2, hours=1),
              subject="Team social", attendees=[attendee("ben@contoso.com", "Ben Okafor")], series_master_id="series-1",
              organizer=ana)
    exclusions.add(db, user.id, exclusions.SERIES, "series-1")
    today = now.date().isoformat()
    db.digests_sent.insert_one({"_id": f"{user.id}:{today}", "user_id": user.id, "local_date": today,
                                "status": "sent", "attempts": 1, "claimed_at": now - timedelta(hours=3),
                                "sent_at": now - timedelta(hours=3), "finished_at": now - timedelta(hours=3),
                                "meetings": 2})
    db.preps_sent.insert_one({"_id": "prep-1", "user_id": user.id, "meeting": "uid-g-old",
                              "start": now - timedelta(hours=1), "status": "skipped", "reason": "declined",
                              "attempts": 1, "claimed_at": now - timedelta(hours=2),
                              "finished_at": now - timedelta(hours=2), "expires_at": now + timedelta(days=7)})
    users.touch_notification(db, user.id, now - timedelta(minutes=5))
    activity.note(db, user.id, "sync", now - timedelta(minutes=5), "synced (delta)", result="delta")
    activity.note(db, user.id, "error", now - timedelta(hours=1), "sync throttled: 429 ApplicationThrottled")
    users.record_sync_success(db, user.id, now - timedelta(minutes=5), "delta", 0.8)
    db.subscriptions.insert_one({"_id": "sub-ana", "user_id": user.id, "status": "active", "failures": 0, "rich": False,
                                 "expires_at": now + timedelta(days=6), "created_at": now - timedelta(days=1),
                                 "last_notification_at": now - timedelta(minutes=5)})
    db.outbound_endpoints.insert_one({
        "_id": "ep_failing", "url": "https://coaching.example.com/hooks/calsync", "event_types": ["digest.sent"],
        "description": "coaching product", "status": "active", "secrets": [], "created_at": now - timedelta(days=2),
        "failing_since": now - timedelta(hours=1), "consecutive_failures": 3, "paused_reason": None,
        "paused_at": None, "last_success_at": now - timedelta(hours=2),
        "attempts": [{"at": now - timedelta(minutes=10), "delivery_id": "dlv_1", "event_id": "msg_1",
                      "type": "digest.sent", "attempt": 3, "status": 503, "duration_ms": 40, "error": "HTTP 503",
                      "ok": False}]})
    coaching.record(db, user.id, now.date() - timedelta(days=1), [])
    return Seeded(user.id, str(planning["_id"]), "g-planning", "ep_failing")


def pages(settings, seeded: Seeded, base: str) -> list[Page]:
    """Every page, as a person (or an operator) reaches it."""
    user = seeded.user_id
    dashboard = links.dashboard_url(settings, seeded.meeting_key, user, seeded.meeting_graph_id)
    text = tips.library()["disc"]["styles"]["I"]["tips"][0]
    tip = links.feedback_url(settings, user, tips.Tip("disc", "I", text).key, None, "useful")
    return [
        Page("home", f"{base}/"),
        Page("connect", f"{base}/connect"),
        Page("not found", f"{base}/no/such/page", status=404),
        Page("problem type", f"{base}/problems/bad-request"),
        Page("your page", links.home_url(settings, user)),
        Page("your page, not signed in", f"{base}/connections/me", status=401),
        Page("sign-in error", f"{base}/auth/callback?code=x&state=y", status=400),
        Page("settings", links.settings_url(settings, user)),
        Page("your week", links.week_url(settings, user)),
        Page("meeting dashboard", dashboard),
        Page("keep out of insights", links.exclude_url(settings, seeded.meeting_key, user, seeded.meeting_graph_id)),
        Page("unsubscribe", links.unsubscribe_url(settings, user)),
        Page("unsubscribe from prep mails", links.unsubscribe_prep_url(settings, user)),
        Page("tip feedback", tip),
        Page("digest as a page", links.preview_url(settings, user)),
        Page("link expired", f"{base}/digest/settings?t=expired", status=403),
        Page("operator sign-in", f"{base}/ops/login"),
        Page("operations", f"{base}/ops/", operator=True),
        Page("operations, a user", f"{base}/ops/users/ana@contoso.com", operator=True),
        Page("outbound webhooks", f"{base}/ops/webhooks", operator=True),
        Page("an endpoint", f"{base}/ops/webhooks/{seeded.endpoint_id}", operator=True),
        Page("operations, not found", f"{base}/ops/users/nobody@contoso.com", operator=True, status=404),
    ]
