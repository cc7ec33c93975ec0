"""Coaching suggestions: who to prepare for today, why, which tip; no tip repeated within 14 days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from service.digest import send
from service.insights import coaching
from service.insights.tips import candidates
from service.store import coaching as coaching_store
from tests.support.factories import add_event, add_people, add_user, attendee

DAY = date(2026, 7, 1)
PEOPLE = [
    {"email": f"p{n}@example.com", "name": f"Person {n}", "assessments": {"disc": {"primary": "DISC"[n % 4]}}}
    for n in range(8)
]


def _event(db, graph_id, start, others, minutes=60, **extra):
    return add_event(db, "user-1", graph_id, start, start + timedelta(minutes=minutes),
                     attendees=[attendee("me@example.com")] + [attendee(o) for o in others], **extra)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def test_todays_people_come_first_by_meeting_time_then_those_met_most(db):
    user = add_user(db)
    add_people(db, PEOPLE + [{"email": "me@example.com", "name": "Me", "assessments": {"disc": {"primary": "S"}}}])
    _event(db, "late", _at(DAY, 15), ["p1@example.com"])
    _event(db, "early", _at(DAY, 10), ["p2@example.com"])
    for n in range(6):   # p3: six one-to-ones in the last two weeks
        _event(db, f"p3-{n}", _at(DAY - timedelta(days=n + 1), 9), ["p3@example.com"])
    _event(db, "p4", _at(DAY - timedelta(days=3), 11), ["p4@example.com"], minutes=30)

    found = coaching.suggest(db, user, DAY)

    assert [(s.email, s.reason) for s in found] == [("p2@example.com", "meeting_today"),
                                                    ("p1@example.com", "meeting_today"),
                                                    ("p3@example.com", "met_often"), ("p4@example.com", "met_often")]
    assert found[0].why == "meeting them today at 10:00"
    assert found[2].why == "met 6 times in the last 14 days" and found[3].why == "met once in the last 14 days"
    assert all(s.tip.framework == "disc" and s.tip.text for s in found)
    # My style (S) and p2's (S) have a pairing tip: it is the first choice.
    assert found[0].tip.text == candidates({"assessments": {"disc": {"primary": "S"}}}, {"disc": "S"}, "x")[0].text


def test_ignored_meetings_do_not_make_anyone_a_suggestion(db):
    user = add_user(db)
    add_people(db, PEOPLE)
    yesterday = DAY - timedelta(days=1)
    _event(db, "allday", _at(yesterday, 0), ["p1@example.com"], minutes=24 * 60, is_all_day=True)
    _event(db, "cancelled", _at(yesterday, 9), ["p2@example.com"], is_cancelled=True)
    _event(db, "declined", _at(yesterday, 10), ["p3@example.com"], response="declined")
    _event(db, "townhall", _at(yesterday, 11), [f"p{n % 8}-x{n}@example.com" for n in range(25)] + ["p4@example.com"])
    _event(db, "alone", _at(yesterday, 12), [])
    _event(db, "old", _at(DAY - timedelta(days=15), 9), ["p5@example.com"])

    assert coaching.suggest(db, user, DAY) == []


def test_at_most_five_people_and_one_suggestion_each(db):
    user = add_user(db)
    add_people(db, PEOPLE)
    _event(db, "big", _at(DAY, 9), [p["email"] for p in PEOPLE])
    _event(db, "again", _at(DAY, 11), ["p0@example.com"])

    found = coaching.suggest(db, user, DAY)

    assert len(found) == 5 and len({s.person_id for s in found}) == 5
    assert len({s.tip.key for s in found}) == 5


def test_a_tip_is_not_repeated_within_14_days_while_others_remain_and_the_same_day_answers_the_same(db):
    user = add_user(db)
    add_people(db, PEOPLE[:1])          # p0, DISC D: four style tips, no pairing (my style is unknown)
    days = [DAY + timedelta(days=n) for n in range(6)]
    for day in days:
        _event(db, f"m-{day}", _at(day, 9), ["p0@example.com"])

    shown = [coaching.suggest(db, user, day)[0].tip.key for day in days]
    again = coaching.suggest(db, user, days[-1])[0].tip.key

    assert len(set(shown[:4])) == 4                 # four different tips while there are four
    assert shown[4] == shown[0] and shown[5] == shown[1]   # then the one shown longest ago
    assert again == shown[5]
    recorded = coaching_store.shown_between(db, user.id, days[0], days[-1])
    assert recorded[days[0].isoformat()] == {shown[0]}


def test_the_digest_shows_each_persons_tips_once_and_records_every_tip_it_showed(rt, db, smtp_inbox):
    user = add_user(db)
    add_people(db, PEOPLE)
    _event(db, "m1", _at(DAY, 10), ["p1@example.com", "p2@example.com"])
    _event(db, "m2", _at(DAY, 14), ["p1@example.com"])
    for n in range(3):   # p3: met three times in the last two weeks, not today
        _event(db, f"p3-{n}", _at(DAY - timedelta(days=n + 1), 9), ["p3@example.com"])

    assert send.deliver(rt.db, rt.settings, rt.mailer, user.id, DAY.isoformat()) == "sent"

    text = next(p.get_content() for p in smtp_inbox.messages[0].walk() if p.get_content_type() == "text/plain")
    people = text.split("THE PEOPLE YOU MEET TODAY")[1].split("ALSO WORTH A THOUGHT")[0]
    also = text.split("ALSO WORTH A THOUGHT")[1].split("WAS A TIP USEFUL?")[0]
    assert people.count("Person 1") == 1 and "In: 10:00 Meeting; 14:00 Meeting" in people
    assert "Person 2" in people and "Person 3" not in people
    assert "Person 3 (met 3 times in the last 14 days)" in also
    tips = [line.strip()[2:].rsplit(" [", 1)[0] for line in (people + also).splitlines()
            if line.strip().startswith("* ")]
    assert len(tips) == len(set(tips)) >= 3                   # no tip twice in one mail
    recorded = coaching_store.shown_between(db, user.id, DAY, DAY)[DAY.isoformat()]
    assert len(recorded) == len(tips)                        # every tip shown counts for the 14-day no-repeat


def test_a_tip_marked_not_useful_is_not_shown_again_while_another_remains(db):
    user = add_user(db)
    add_people(db, PEOPLE)
    _event(db, "today", _at(DAY, 10), ["p1@example.com"])
    [first] = coaching.suggest(db, user, DAY, record=False)

    coaching_store.record_feedback(db, user.id, first.tip.key, first.person_id, coaching_store.NOT_USEFUL)
    [again] = coaching.suggest(db, user, DAY, record=False)
    coaching_store.record_feedback(db, user.id, first.tip.key, first.person_id, coaching_store.USEFUL)
    [changed_mind] = coaching.suggest(db, user, DAY, record=False)

    assert again.tip.key != first.tip.key and again.person_id == first.person_id
    assert changed_mind.tip.key == first.tip.key
    assert coaching_store.feedback(db, user.id) == {first.tip.key: "useful"}
