"""Benchmark: build and render 10,000 users' daily digests (text + HTML + MIME message), no I/O.

    python bench/digest.py [--users 10000] [--workers 2] [--meetings 6]

Prints users/s and the total time; the target is <= 30 s for 10,000 users on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.digest.build import build_digest  # noqa: E402
from service.digest.collaborators import Collaborator  # noqa: E402
from service.digest.matching import Directory  # noqa: E402
from service.digest.render import message  # noqa: E402

DAY = date(2026, 7, 1)
ZONES = ["America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Berlin", "Asia/Kolkata",
         "Pacific/Honolulu", "Pacific/Tongatapu", "Australia/Sydney"]
DISC = "DISC"


def make_directory(size: int, rng: random.Random) -> list[dict]:
    people = []
    for i in range(size):
        assessments = {"disc": {"primary": rng.choice(DISC)}}
        if i % 3 == 0:
            t = rng.randint(1, 9)
            assessments["enneagram"] = {"type": str(t), "wing": str(t % 9 + 1)}
        people.append({"_id": f"p{i}", "primary_email": f"person{i}@example.com",
                       "emails": [f"person{i}@example.com", f"p.{i}@alias.example.org"],
                       "name": f"Person {i}", "team": f"Team {i % 40}", "assessments": assessments})
    return people


def make_events(user_id: str, zone_offset_hours: int, meetings: int, rng: random.Random, people: int) -> list[dict]:
    events = []
    base = datetime(2026, 7, 1, 8, 0, tzinfo=UTC) - timedelta(hours=zone_offset_hours)
    for n in range(meetings):
        start = base + timedelta(minutes=60 * n + rng.choice((0, 15, 30)))
        invited = rng.sample(range(people + 500), rng.randint(1, 8))  # some are not in the directory
        attendees = [{"name": f"Person {k}",
                      "email": rng.choice((f"person{k}@example.com", f"P.{k}@alias.example.org")),
                      "type": "required", "response": "accepted"} for k in invited]
        attendees.append({"name": "Room", "email": "room@example.com", "type": "resource", "response": "accepted"})
        events.append({"user_id": user_id, "graph_id": f"{user_id}-{n}", "subject": f"Meeting {n}", "start": start,
                       "end": start + timedelta(minutes=rng.choice((15, 30, 45, 60))), "start_tz": "UTC",
                       "is_all_day": n == 0 and rng.random() < 0.2, "is_cancelled": rng.random() < 0.05,
                       "organizer": {"name": "Me", "email": f"{user_id}@example.com"}, "attendees": attendees,
                       "is_online_meeting": True})
    return events


def run_chunk(args: tuple[int, int, int, int]) -> tuple[int, int]:
    """Build, render and serialise the digests of users [first, last); returns (digests, bytes)."""
    first, last, meetings, directory_size = args
    rng = random.Random(first)
    directory = Directory(make_directory(directory_size, random.Random(7)))
    offsets = {"America/Los_Angeles": -7, "America/New_York": -4, "Europe/London": 1, "Europe/Berlin": 2,
               "Asia/Kolkata": 5, "Pacific/Honolulu": -10, "Pacific/Tongatapu": 13, "Australia/Sydney": 10}
    total_bytes = 0
    for i in range(first, last):
        zone = ZONES[i % len(ZONES)]
        user = {"_id": f"user{i}", "email": f"user{i}@example.com", "display_name": f"User {i}", "time_zone": zone}
        events = make_events(user["_id"], offsets[zone], meetings, rng, directory_size)
        meet_most = [Collaborator("person1@example.com", "Person 1", "p1", 3.0, 4, 120)]
        digest = build_digest(user, DAY, events, directory, meet_most)
        for meeting in digest.meetings + digest.all_day:
            meeting.link = f"https://calsync.example/meetings/{meeting.key}?t=token"
        digest.settings_link = digest.unsubscribe_link = "https://calsync.example/digest/settings?t=token"
        total_bytes += len(bytes(message(digest, "calsync <calsync@example.com>")))
    return last - first, total_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--meetings", type=int, default=6)
    parser.add_argument("--directory", type=int, default=5_000)
    args = parser.parse_args()
    chunk = 250
    jobs = [(s, min(s + chunk, args.users), args.meetings, args.directory) for s in range(0, args.users, chunk)]
    started = time.perf_counter()
    if args.workers <= 1:
        results = [run_chunk(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            results = list(pool.map(run_chunk, jobs))
    elapsed = time.perf_counter() - started
    digests = sum(r[0] for r in results)
    size = sum(r[1] for r in results)
    print(f"digests: {digests}  workers: {args.workers}  meetings/user: {args.meetings}  "
          f"directory: {args.directory} people")
    print(f"total: {elapsed:.1f} s  ({digests / elapsed:.0f} digests/s, {elapsed / digests * 1000:.2f} ms each, "
          f"avg message {size / digests / 1024:.1f} KiB)  target: <= 30 s for 10,000 on 2 cores")


if __name__ == "__main__":
    main()
