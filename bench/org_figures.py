"""``python -m bench.org_figures``: the time side of coaching for a realistic organisation, in figures.

50 people in 6 teams (a manager each, one team in New York, the rest in Paris), four weeks of calendars: a weekly
team meeting (a series the manager organises, 60 or 90 minutes), weekly or fortnightly 1:1s with the manager (some
skipped lately), cross-team reviews, customer calls with people from outside, focus-eating ad hoc meetings, and the
noise Worklytics leaves out (declined, cancelled, all-day, alone, a 40-person all-hands). It runs calsync's own
readers (``timeside``) on an in-memory store and prints the organisation's weeks, the overdue 1:1s, the recurring
series flagged, and one person's network.
"""

from __future__ import annotations

import random
import statistics
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import mongomock

from service import store
from service.insights import timeside, week
from service.insights.people import import_rows
from service.store import users as users_store

TEAMS = 6
PEOPLE = 50
FIRST_MONDAY = date(2026, 2, 2)          # ISO 2026-W06 to W09
NOW = datetime(2026, 3, 2, 7, tzinfo=UTC)
DISC = "DISCDISCSSCC"


def directory(rng: random.Random) -> list[dict]:
    rows = []
    for n in range(PEOPLE):
        team = n % TEAMS
        manager = f"p{team}@contoso.com" if n >= TEAMS else None
        row = {"email": f"p{n}@contoso.com", "name": f"Person {n}", "team": f"Team {team}",
               "assessments": {"disc": {"primary": rng.choice(DISC)}}}
        if n % 3 == 0:
            row["assessments"]["enneagram"] = {"type": str(rng.randint(1, 9))}
        if n % 4 == 0:
            row["assessments"]["mbti16"] = {"type": rng.choice(["INTJ", "ENFP", "ISTJ", "ESFJ", "INFP", "ENTJ"])}
        if manager:
            row["manager"] = manager
        if n % 17 == 5:
            row["visibility"] = "private"
        rows.append(row)
    return rows


def meeting(db, owner: int, gid: str, start: datetime, minutes: int, others: list[str], **extra) -> None:
    doc = {"user_id": f"u{owner}", "graph_id": gid, "ical_uid": extra.pop("ical_uid", gid), "subject": "Meeting",
           "start": start.astimezone(UTC), "end": start.astimezone(UTC) + timedelta(minutes=minutes),
           "is_all_day": False, "is_cancelled": False, "organizer": {"email": extra.pop("organizer",
                                                                                       f"p{owner}@contoso.com")},
           "attendees": [{"email": e, "type": "required", "response": "accepted"} for e in others]}
    doc.update(extra)
    db.events.insert_one(doc)


def calendars(db, rng: random.Random) -> None:
    for n in range(PEOPLE):
        zone = ZoneInfo("America/New_York" if n % TEAMS == 5 else "Europe/Paris")
        team = n % TEAMS
        mates = [f"p{m}@contoso.com" for m in range(team, PEOPLE, TEAMS) if m != n]
        manager = team
        for w in range(4):
            monday = FIRST_MONDAY + timedelta(days=7 * w)

            def at(day: int, hour: int, minute: int = 0, monday=monday, zone=zone) -> datetime:
                d = monday + timedelta(days=day)
                return datetime(d.year, d.month, d.day, hour, minute, tzinfo=zone)
            series = f"team-{team}"
            meeting(db, n, f"t{team}-{w}-{n}", at(0, 10), 90 if team % 2 else 60, mates,
                    ical_uid=f"t{team}-{w}", series_master_id=series, organizer=f"p{manager}@contoso.com",
                    subject=f"Team {team} weekly")
            if n != manager and (w < 2 or n % 3) and (w % 2 == 0 or n % 2):
                meeting(db, n, f"o{n}-{w}", at(1 + n % 3, 14), 30, [f"p{manager}@contoso.com"],
                        ical_uid=f"o{n}-{w}", organizer=f"p{manager}@contoso.com", subject="1:1")
            if n == manager:
                for m in range(team + TEAMS, PEOPLE, TEAMS):
                    if (w < 2 or m % 3) and (w % 2 == 0 or m % 2):
                        meeting(db, n, f"o{m}-{w}", at(1 + m % 3, 14), 30, [f"p{m}@contoso.com"],
                                ical_uid=f"o{m}-{w}", subject="1:1")
            for k in range(rng.randint(6, 14)):
                day, hour = rng.randrange(5), rng.choice((9, 11, 13, 14, 15, 16, 17))
                others = rng.sample([f"p{m}@contoso.com" for m in range(PEOPLE) if m != n], rng.randint(1, 5))
                if rng.random() < 0.15:
                    others.append(f"buyer{rng.randrange(9)}@fabrikam.com")
                meeting(db, n, f"a{n}-{w}-{k}", at(day, hour, rng.choice((0, 5, 30))), rng.choice((30, 30, 45, 60)),
                        others, organizer=rng.choice(others + [f"p{n}@contoso.com"]))
            meeting(db, n, f"x{n}-{w}", at(2, 9), 60, ["p1@contoso.com"], is_cancelled=True)
            meeting(db, n, f"d{n}-{w}", at(3, 9), 60, ["p2@contoso.com", f"p{n}@contoso.com"],
                    attendees=[{"email": f"p{n}@contoso.com", "response": "declined"},
                               {"email": "p2@contoso.com", "response": "accepted"}])
            meeting(db, n, f"h{n}-{w}", at(4, 0), 24 * 60, [], is_all_day=True, subject="Holiday")
            meeting(db, n, f"f{n}-{w}", at(4, 8), 60, [], subject="Focus block")
            if w == 2:
                meeting(db, n, f"all{n}", at(3, 16), 60, [f"p{m}@contoso.com" for m in range(40)],
                        ical_uid="all-hands", subject="All hands")


def main() -> None:
    rng = random.Random(25)
    db = mongomock.MongoClient(tz_aware=True).get_database("org")
    store.init_db(db)
    import_rows(db, enumerate(directory(rng), start=1))
    for n in range(PEOPLE):
        db.users.insert_one({"_id": f"u{n}", "email": f"p{n}@contoso.com", "display_name": f"Person {n}",
                             "tenant_id": "t", "connection": {"status": "connected"},
                             "time_zone": "America/New_York" if n % TEAMS == 5 else "Europe/Paris"})
    calendars(db, rng)
    users = [users_store.get(db, f"u{n}") for n in range(PEOPLE)]
    print(f"{PEOPLE} people, {db.events.count_documents({})} stored events over four weeks (2026-W06 to W09)")
    for w in range(6, 10):
        reports = timeside.weeks_for(db, users, 2026, w)
        column = {k: [getattr(r, k) for r in reports.values()] for k in
                  ("meeting", "focus", "fragmented", "after_hours", "double_booked")}
        runs = sum(len(r.back_to_back) for r in reports.values())
        left = {}
        for r in reports.values():
            for reason, count in r.left_out.items():
                left[reason] = left.get(reason, 0) + count
        print(f"2026-W{w:02d}: median h " + ", ".join(f"{k} {statistics.median(v):g}" for k, v in column.items())
              + f"; back-to-back runs {runs}; left out {dict(sorted(left.items()))}")
    overdue = [(u.email, r.name, r.usual_days, r.overdue_days, r.tip.framework if r.tip else None)
               for u in users for r in timeside.rhythm_report(db, u, NOW) if r.overdue and r.is_manager]
    print(f"overdue 1:1s with a manager on {NOW:%a %d %b %Y}: {len(overdue)}; e.g. {overdue[:3]}")
    flagged = timeside.hygiene_report(db, users[1], NOW + timedelta(days=35), NOW)
    print(f"p1's recurring share {flagged.recurring_share}; series flagged: "
          f"{[(s.subject, s.attendees, s.minutes, [x['problem'] for x in s.suggestions]) for s in flagged.series]}")
    net = timeside.network_report(db, users[7], NOW)
    print(f"p7's network: {net.hours} h; DISC {net.styles['disc']}; internal {net.internal}, external "
          f"{net.external}; new {len(net.new)}, fading {len(net.fading)}")
    ahead = timeside.look_ahead(db, users[7], *week.week_of(NOW, ZoneInfo("Europe/Paris")), NOW)
    print(f"p7's week ahead (W10, nothing booked yet): {ahead.report.meetings} meetings; overdue 1:1s "
          f"{[r.name for r in ahead.overdue]}")


if __name__ == "__main__":
    main()
