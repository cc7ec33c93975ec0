"""P9: weekly insights for 10,000 people with 40 meetings a week each (400,000 events) on the MongoDB wire server,
against reading the same events alone (the baseline, measured in the same run).

calsync's side is ``timeside.weeks_for``. Cold (no summaries yet): each person's slice of the ``(user_id, start)``
index (one query a person, the week's fields only), and per batch of 500 people their stored summaries, exclusions,
working hours and directory entries, then every measure of the week in process (cleaning, one copy per meeting,
focus, fragments, back-to-back runs, after-hours, double booking, each day in the person's zone), and the finished
weeks stored (``service.store.weeks``). Steady state: 1% of the people then get a new meeting through the sync's
write (``events.apply_changes``, which bumps their events version), and all the weeks are read again: the fresh
summaries served, the changed people's weeks measured again. The baseline is reading the events alone
(``events.in_window_for_users``, the same queries and fields, batch by batch, nothing done with them). Targets: the
steady state in at most 60 s (the cold figure is reported, untargeted: it is the first read after a deploy or a
change of the measures); every served week equal to the one measured again; one changed meeting recomputes only
the weeks of the people in it (one person's week, timed).
``--quick``: 1,000 people (the test suite's smoke: 60).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pymongo

from bench.common import Part
from service import store
from service.insights import timeside, week
from service.store import events as events_store
from service.store.records import User

YEAR, WEEK = 2026, 10
ZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney")
PER_WEEK = 40
INSERT_BATCH = 5000


def people(count: int) -> list[User]:
    return [User(f"u{n}", f"p{n}@example.com", f"Person {n}", "t", ZONES[n % len(ZONES)]) for n in range(count)]


def events_for(user: User, rng: random.Random) -> list[dict]:
    """40 meetings in the person's working week: 8 a day between 08:00 and 18:00 local, 15 to 90 minutes, some
    overlapping, a few declined or all-day, each with 1 to 6 colleagues."""
    zone = ZoneInfo(user.time_zone)
    monday = datetime.fromisocalendar(YEAR, WEEK, 1).date()
    found = []
    for n in range(PER_WEEK):
        day = monday + timedelta(days=n % 5)
        start = datetime(day.year, day.month, day.day, 8, tzinfo=zone) + timedelta(minutes=rng.randrange(0, 600, 5))
        end = start + timedelta(minutes=rng.choice((15, 30, 30, 45, 60, 90)))
        others = [f"p{rng.randrange(10_000)}@example.com" for _ in range(rng.randint(1, 6))]
        found.append({"user_id": user.id, "graph_id": f"{user.id}-{n}", "ical_uid": f"{user.id}-{n}",
                      "subject": "Meeting", "start": start.astimezone(UTC), "end": end.astimezone(UTC),
                      "is_all_day": n % 37 == 0, "is_cancelled": False,
                      "organizer": {"email": others[0]},
                      "attendees": [{"email": e, "type": "required", "response": "accepted"} for e in others]
                      + [{"email": user.email, "type": "required", "response": "declined" if n % 29 == 0 else
                          "accepted"}]})
    return found


def seed(db, users: list[User]) -> int:
    rng = random.Random(9)
    db.users.insert_many([{"_id": u.id, "email": u.email, "time_zone": u.time_zone,
                           "connection": {"status": "connected"}} for u in users])
    batch, total = [], 0
    for user in users:
        batch += events_for(user, rng)
        if len(batch) >= INSERT_BATCH:
            db.events.insert_many(batch, ordered=False)
            total += len(batch)
            batch = []
    if batch:
        db.events.insert_many(batch, ordered=False)
        total += len(batch)
    return total


def read_only(db, users: list[User]) -> tuple[float, int]:
    """The baseline: the same events through the same queries as ``weeks_for``, nothing computed."""
    began, count = time.perf_counter(), 0
    for at in range(0, len(users), timeside.BATCH):
        batch = users[at:at + timeside.BATCH]
        zones = {u.id: ZoneInfo(u.time_zone) for u in batch}
        bounds = [week.week_bounds(YEAR, WEEK, z) for z in zones.values()]
        found = events_store.in_window_for_users(db, zones, min(b[0] for b in bounds).astimezone(UTC),
                                                 max(b[1] for b in bounds).astimezone(UTC))
        count += sum(len(v) for v in found.values())
    return time.perf_counter() - began, count


def new_meeting(user: User, name: str) -> dict:
    """A meeting as Graph's delta lists it: Wednesday 19:00-19:45 in the person's zone, with one colleague."""
    day = datetime.fromisocalendar(YEAR, WEEK, 3)
    time_of = {"timeZone": user.time_zone}
    return {"id": f"{user.id}-{name}", "subject": "Added", "iCalUId": f"{user.id}-{name}", "changeKey": "c1",
            "lastModifiedDateTime": "2026-03-01T00:00:00Z",
            "start": {"dateTime": day.replace(hour=19).strftime("%Y-%m-%dT%H:%M:%S"), **time_of},
            "end": {"dateTime": day.replace(hour=19, minute=45).strftime("%Y-%m-%dT%H:%M:%S"), **time_of},
            "organizer": {"emailAddress": {"address": "p1@example.com"}},
            "attendees": [{"emailAddress": {"address": "p1@example.com"}, "type": "required",
                           "status": {"response": "accepted"}}]}


def _wrong_weeks(cold: dict, steady: dict, changed: set[str]) -> int:
    """People whose steady-state week is not the cold one (unchanged people) or not it plus the new meeting."""
    wrong = 0
    for user_id, report in cold.items():
        later = steady[user_id]
        if user_id in changed:
            wrong += later.meetings != report.meetings + 1 or later.seconds == report.seconds
        else:
            wrong += later != report
    return wrong


def run(ctx) -> Part:
    count = 60 if ctx.figures.get("smoke") else 1_000 if ctx.quick else 10_000
    part = Part("P9", f"weekly insights for {count:,} people x {PER_WEEK} meetings")
    client = pymongo.MongoClient(ctx.mongodb_uri("calsync_p9"), tz_aware=True)
    db = client.get_default_database()
    try:
        client.drop_database(db.name)
        store.init_db(db)
        users = people(count)
        began = time.perf_counter()
        stored = seed(db, users)
        part.notes.append(f"seeded {stored:,} events in {time.perf_counter() - began:.0f} s")
        # The baseline is read before and after the weeks and the faster kept: the first pass over freshly
        # seeded events is the slower one on the wire server, and it must not flatter the weeks.
        first, read = read_only(db, users)
        began = time.perf_counter()
        reports = timeside.weeks_for(db, users, YEAR, WEEK)      # cold: every week measured from events, stored
        elapsed = time.perf_counter() - began
        second, _ = read_only(db, users)
        baseline = min(first, second)
        part.notes.append(f"reading alone: {first:.1f} s before the weeks, {second:.1f} s after (the faster is the "
                          "baseline)")
        changed = users[::100]           # 1% of the people get a new meeting, through the sync's own write
        began = time.perf_counter()
        for user in changed:
            events_store.apply_changes(db, user.id, [new_meeting(user, "added")], datetime.now(UTC))
        part.notes.append(f"{len(changed):,} people given a new meeting (apply_changes) in "
                          f"{time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        steady = timeside.weeks_for(db, users, YEAR, WEEK)
        served = time.perf_counter() - began
        part.add(f"{count:,} weeks, {len(changed):,} changed since (steady state)", round(served, 2), "s",
                 round(baseline, 2), f"reading the {read:,} events alone", "<= 60 s", served <= 60)
        part.add(f"{count:,} weeks computed from events (cold)", round(elapsed, 2), "s",
                 round(baseline, 2), f"reading the {read:,} events alone", "", None)
        part.add("per person (steady state / cold)", round(served / count * 1000, 2), "ms",
                 round(elapsed / count * 1000, 2), "computed from events", "", None)
        wrong = _wrong_weeks(reports, steady, {u.id for u in changed})
        part.add("weeks served unlike cold (+1 meeting if changed)", wrong, "", 0, "", "0", wrong == 0)
        one = users[count // 2 + 1]
        events_store.apply_changes(db, one.id, [new_meeting(one, "one")], datetime.now(UTC))
        began = time.perf_counter()
        again = timeside.week_report(db, one, YEAR, WEEK)
        single = time.perf_counter() - began
        assert again.meetings == steady[one.id].meetings + 1, "the changed meeting is in the week"
        part.add("one changed meeting: one person's week again", round(single * 1000, 1), "ms",
                 round(elapsed * 1000, 1), "the whole organisation", "<< organisation", single < elapsed / 10)
        sample = reports[users[0].id]
        part.notes.append(f"{users[0].id} ({users[0].time_zone}): {sample.meetings} meetings, {sample.meeting} h in "
                          f"meetings, {sample.focus} h focus, {sample.fragmented} h fragmented, "
                          f"{len(sample.back_to_back)} back-to-back runs, {sample.after_hours} h after hours, "
                          f"{sample.double_booked} h double-booked; left out {sample.left_out}")
        totals = [r.meeting for r in reports.values()]
        part.notes.append(f"meeting hours across people: min {min(totals)}, median {sorted(totals)[len(totals) // 2]}, "
                          f"max {max(totals)}")
    finally:
        client.drop_database(db.name)
        client.close()
    return part
