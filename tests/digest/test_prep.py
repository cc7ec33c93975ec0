"""Meeting prep mails: when they are due, which meetings get one, exactly once, over real SMTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service import queues
from service.digest import prep
from service.store import exclusions, tenants
from service.store import preps as preps_store
from service.store import users as users_store
from tests.support.factories import add_event, add_people, add_user, attendee

NOW = datetime(2026, 7, 1, 8, 50, tzinfo=UTC)
NINE = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def _parts(message):
    return {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}


def _meeting(db, user_id, start, graph_id="m1", others=("ana@example.com",), **extra):
    extra.setdefault("subject", "Design review")
    return add_event(db, user_id, graph_id, start, start + timedelta(minutes=30),
                     attendees=[attendee("me@example.com")] + [attendee(o) for o in others], **extra)


def _deliver(rt, due: prep.Due, now=None, notify=None) -> str:
    return prep.deliver(rt.db, rt.settings, rt.mailer, due.user_id, due.meeting, due.start.isoformat(),
                        now or NOW, notify)


@pytest.fixture
def me(db):
    add_people(db)
    return add_user(db)


def test_a_prep_is_due_its_lead_time_before_the_meeting_and_not_before(db, me):
    _meeting(db, me.id, NINE)

    assert prep.due_preps(db, NINE - timedelta(minutes=15, seconds=1)) == []
    assert prep.due_preps(db, NINE - timedelta(minutes=15)) == [prep.Due(me.id, "uid-m1", NINE)]
    assert prep.due_preps(db, NINE) == []                      # started: too late

    users_store.set_prep_preferences(db, me.id, minutes=60)
    assert [d.start for d in prep.due_preps(db, NINE - timedelta(minutes=60))] == [NINE]
    users_store.set_prep_preferences(db, me.id, minutes=None)
    assert prep.due_preps(db, NINE - timedelta(minutes=5)) == []


def test_the_prep_mail_arrives_over_smtp_with_styles_tips_notes_outsiders_apart_and_the_dashboard(
        rt, db, me, smtp_inbox):
    tenants.set_domains(db, me.tenant_id, ["example.org"])
    add_people(db, [{"email": "zed@partner.example", "name": "Zed", "assessments": {"disc": {"primary": "I"}}}])
    _meeting(db, me.id, NINE, others=("ana@example.com", "ben@example.com", "zed@partner.example",
                                      "nobody@example.org"))
    sent = []

    [due] = prep.due_preps(db, NOW)
    assert _deliver(rt, due, notify=sent.append) == "sent"

    [message] = smtp_inbox.messages
    assert message["Subject"] == "Prep: Design review at 09:00"
    assert message["To"] == "Morgan Me <me@example.com>"
    text = _parts(message)["text/plain"]
    inside, outside = text.split("FROM OUTSIDE YOUR ORGANIZATION")
    assert "Ana" in inside and "Ben" in inside and "Nobody" in inside and "Zed" not in inside
    assert "Zed <zed@partner.example>: DISC I (Influence)" in outside
    assert "    * " in inside and "FOR THE GROUP" in outside
    assert f"Useful? {rt.settings.public_url}/digest/tips?t=" in inside
    assert f"Dashboard: {rt.settings.public_url}/meetings/" in text
    assert "In 15 minutes: Design review" in text and "Wed 1 Jul, 09:00–09:30" in text
    html = _parts(message)["text/html"]
    assert 'class="external"' in html and "From outside your organization" in html
    say = f"{rt.settings.public_url}/people/say?t="    # the directory describes me: who sees tips about me
    assert f"Who sees tips about you: {say}" in text and f'href="{say}' in html
    assert "<h1" in html and html.count("<h2") == 3 and "Was this useful?" in html
    # One-click unsubscribe (RFC 8058), as the digest has: the provider's button turns prep mails off.
    assert message["List-Unsubscribe"] == f"<{rt.settings.public_url}/digest/unsubscribe?list=prep&t=" \
        f"{message['List-Unsubscribe'].split('&t=')[1]}"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent == [{"type": "meeting.prep_due", "user_id": me.id, "meeting_key": "uid-m1", "event_id": "m1",
                     "start": "2026-07-01T09:00:00Z",
                     "attendees": ["ana@example.com", "ben@example.com", "zed@partner.example"], "channels": ["email"]}]
    assert preps_store.get(db, me.id, "uid-m1", NINE)["status"] == "sent"


def test_a_private_meeting_prep_and_payload_never_show_its_subject(rt, db, me, smtp_inbox):
    _meeting(db, me.id, NINE, subject=None, sensitivity="private")
    sent = []

    [due] = prep.due_preps(db, NOW)
    assert _deliver(rt, due, notify=sent.append) == "sent"

    assert smtp_inbox.messages[0]["Subject"] == "Prep: Private meeting at 09:00"
    assert set(sent[0]) == {"type", "user_id", "meeting_key", "event_id", "start", "attendees", "channels"}


def test_a_prep_is_sent_once_however_often_the_job_runs_and_a_failed_send_is_retried(
        rt, db, me, smtp_inbox, make_settings):
    from service.runtime import Runtime

    _meeting(db, me.id, NINE)
    [due] = prep.due_preps(db, NOW)
    broken = Runtime(make_settings(smtp_url="smtp://127.0.0.1:9"), db=db, redis_conn=rt.redis)

    with pytest.raises(OSError):
        _deliver(broken, due)
    assert preps_store.get(db, me.id, "uid-m1", NINE)["status"] == "failed"
    assert [_deliver(rt, due) for _ in range(3)] == ["sent", "already-handled", "already-handled"]
    assert len(smtp_inbox.messages) == 1
    assert prep.due_preps(db, NOW) == []          # recorded: the tick no longer plans it


@pytest.mark.parametrize(("change", "reason"), [
    ({"is_cancelled": True}, "cancelled"),
    ({"response": "declined"}, "declined"),
    ({"start": NINE + timedelta(hours=2), "end": NINE + timedelta(hours=3)}, "moved"),
])
def test_a_meeting_changed_after_its_prep_was_planned_gets_none_then(rt, db, me, smtp_inbox, change, reason):
    _meeting(db, me.id, NINE)
    [due] = prep.due_preps(db, NOW)

    db.events.update_one({"graph_id": "m1"}, {"$set": change})

    assert _deliver(rt, due) == f"skipped:{reason}"
    assert smtp_inbox.messages == []


def test_a_moved_meeting_gets_its_prep_at_the_new_time_only(rt, db, me, smtp_inbox):
    _meeting(db, me.id, NINE)
    [old] = prep.due_preps(db, NOW)
    later = NINE + timedelta(hours=2)
    db.events.update_one({"graph_id": "m1"}, {"$set": {"start": later, "end": later + timedelta(minutes=30)}})

    assert _deliver(rt, old) == "skipped:moved"
    assert prep.due_preps(db, NOW) == []
    [new] = prep.due_preps(db, later - timedelta(minutes=15))
    assert new.start == later and _deliver(rt, new, now=later - timedelta(minutes=14)) == "sent"
    assert len(smtp_inbox.messages) == 1 and "Prep: Design review at 11:00" == smtp_inbox.messages[0]["Subject"]


def test_excluded_started_unmatched_all_day_and_cancelled_meetings_are_never_planned(rt, db, me, smtp_inbox):
    _meeting(db, me.id, NINE, graph_id="excluded")
    exclusions.add(db, me.id, exclusions.MEETING, "uid-excluded")
    _meeting(db, me.id, NINE, graph_id="strangers", others=("stranger@example.com",))
    _meeting(db, me.id, NINE, graph_id="cancelled", is_cancelled=True)
    _meeting(db, me.id, NINE, graph_id="declined", response="declined")
    add_event(db, me.id, "allday", datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 7, 2, tzinfo=UTC),
              is_all_day=True, attendees=[attendee("ana@example.com")])
    _meeting(db, me.id, NOW - timedelta(minutes=1), graph_id="started")

    assert prep.due_preps(db, NOW) == []
    assert _deliver(rt, prep.Due(me.id, "uid-excluded", NINE)) == "skipped:excluded"
    assert _deliver(rt, prep.Due(me.id, "uid-started", NOW - timedelta(minutes=1))) == "skipped:started"
    assert smtp_inbox.messages == []


def test_a_meeting_on_two_calendars_gets_one_prep(db, me):
    for graph_id, calendar in (("copy-b", "shared"), ("copy-a", "own")):
        _meeting(db, me.id, NINE, graph_id=graph_id, calendar_id=calendar, ical_uid="uid-roadmap")

    assert prep.due_preps(db, NOW) == [prep.Due(me.id, "uid-roadmap", NINE)]


@pytest.mark.parametrize(("meetings", "min_size", "planned"), [
    ("all", 3, ["one", "outside", "group"]),
    ("one_on_one", 3, ["one"]),
    ("external", 3, ["outside"]),
    ("min_size", 4, ["group"]),
    ("min_size", 3, ["outside", "group"]),
])
def test_the_users_choice_of_meetings_decides_which_get_a_prep(db, me, meetings, min_size, planned):
    _meeting(db, me.id, NINE, graph_id="one", others=("ana@example.com",))
    _meeting(db, me.id, NINE, graph_id="outside", others=("ana@example.com", "guest@partner.example"))
    _meeting(db, me.id, NINE, graph_id="group", others=("ana@example.com", "ben@example.com", "cy@example.com"))
    users_store.set_prep_preferences(db, me.id, meetings=meetings, min_size=min_size)

    assert sorted(d.meeting for d in prep.due_preps(db, NOW)) == sorted(f"uid-{g}" for g in planned)


def test_users_without_prep_or_connection_are_not_planned(db):
    add_people(db)
    add_user(db, user_id="gone", email="gone@example.com", status="needs_reconnect")
    _meeting(db, "gone", NINE)

    assert prep.due_preps(db, NOW) == []


def test_the_tick_enqueues_each_due_prep_once_and_two_ticks_do_not_double_it(rt, db, me, redis_conn):
    _meeting(db, me.id, NINE)

    assert prep.tick(db, redis_conn, NOW) == 1
    assert prep.tick(db, redis_conn, NOW) == 0
    [job] = queues.get_queue(queues.PREP, redis_conn).jobs
    assert job.func_name == queues.SEND_PREP and job.args == (me.id, "uid-m1", NINE.isoformat())


@pytest.mark.parametrize(("zone", "local_start", "utc_due"), [
    # New York springs forward at 02:00 on 8 March 2026: 03:15 EDT is 07:15 UTC; an hour before is 01:15 EST.
    ("America/New_York", datetime(2026, 3, 8, 3, 15), datetime(2026, 3, 8, 6, 15, tzinfo=UTC)),
    # ...and falls back on 1 November: 01:30 happens twice; the first (EDT) is 05:30 UTC.
    ("America/New_York", datetime(2026, 11, 1, 1, 30, fold=0), datetime(2026, 11, 1, 4, 30, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 11, 1, 1, 30, fold=1), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    # Lord Howe Island moves by half an hour (02:00 → 02:30 on 4 October 2026).
    ("Australia/Lord_Howe", datetime(2026, 10, 4, 3, 0), datetime(2026, 10, 3, 15, 0, tzinfo=UTC)),
])
def test_lead_times_are_exact_across_daylight_saving_changes_and_mails_show_local_time(
        rt, db, smtp_inbox, zone, local_start, utc_due):
    from zoneinfo import ZoneInfo

    add_people(db)
    user = add_user(db, time_zone=zone)
    users_store.set_prep_preferences(db, user.id, minutes=60)
    start = local_start.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    _meeting(db, user.id, start)

    assert prep.due_preps(db, utc_due - timedelta(seconds=1)) == []
    [due] = prep.due_preps(db, utc_due)
    assert _deliver(rt, due, now=utc_due) == "sent"

    assert smtp_inbox.messages[0]["Subject"] == f"Prep: Design review at {local_start:%H:%M}"
    assert f", {local_start:%H:%M}–" in _parts(smtp_inbox.messages[0])["text/plain"]
