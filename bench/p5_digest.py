"""P5: 10,000 users' daily digests built and rendered (text + HTML + MIME message) on 2 worker processes,
against rendering the same templates and message from precomputed digests (the baseline).

The events and people directory are synthetic and made in memory (no MongoDB: P3 measures the store);
``Directory`` matching, tips, the meeting filter and both templates are calsync's own code.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta

from bench.common import Part
from service.digest.build import build_digest
from service.digest.render import message, render_html, render_text
from service.insights.collaborators import Collaborator
from service.insights.matching import Directory
from service.store.records import User

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


def run_chunk(args: tuple[int, int, int, int, str]) -> tuple[int, int, float]:
    """The digests of users [first, last); returns (digests, bytes, seconds timed). ``mode``:

    - ``render``: build every digest first (untimed), then time rendering the text and HTML templates from
      that precomputed data (the baseline);
    - ``build``: time building each digest (matching, tips, the meeting filter) and rendering both templates;
    - ``message``: time building and the whole multipart MIME message as bytes (what is sent).
    """
    first, last, meetings, directory_size, mode = args
    rng = random.Random(first)
    directory = Directory(make_directory(directory_size, random.Random(7)))
    offsets = {"America/Los_Angeles": -7, "America/New_York": -4, "Europe/London": 1, "Europe/Berlin": 2,
               "Asia/Kolkata": 5, "Pacific/Honolulu": -10, "Pacific/Tongatapu": 13, "Australia/Sydney": 10}
    total_bytes, timed, built = 0, 0.0, []
    for i in range(first, last):
        zone = ZONES[i % len(ZONES)]
        user = User.from_doc({"_id": f"user{i}", "email": f"user{i}@example.com", "display_name": f"User {i}",
                              "time_zone": zone})
        events = make_events(user.id, offsets[zone], meetings, rng, directory_size)
        began = time.perf_counter()
        meet_most = [Collaborator("person1@example.com", "Person 1", "p1", 3.0, 4, 120)]
        digest = build_digest(user, DAY, events, directory, meet_most)
        for meeting in digest.meetings + digest.all_day:
            meeting.link = f"https://calsync.example/meetings/{meeting.key}?t=token"
        digest.settings_link = digest.unsubscribe_link = "https://calsync.example/digest/settings?t=token"
        if mode == "render":
            built.append(digest)
            continue
        if mode == "build":
            total_bytes += len(render_text(digest)) + len(render_html(digest))
        else:
            total_bytes += len(bytes(message(digest, "calsync <calsync@example.com>")))
        timed += time.perf_counter() - began
    if mode == "render":
        began = time.perf_counter()
        for digest in built:
            total_bytes += len(render_text(digest)) + len(render_html(digest))
        timed = time.perf_counter() - began
    return last - first, total_bytes, timed


def run(ctx) -> Part:
    part = Part("P5", "digests built + rendered vs rendering the templates from precomputed digests")
    users = 250 if ctx.figures.get("smoke") else 1_000 if ctx.quick else 10_000
    workers = min(2, os.cpu_count() or 1)
    chunk, meetings, directory = 250, 6, 5_000
    results = {}
    for mode in ("render", "build", "message"):
        jobs = [(s, min(s + chunk, users), meetings, directory, mode) for s in range(0, users, chunk)]
        began = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            out = list(pool.map(run_chunk, jobs))
        wall = time.perf_counter() - began
        results[mode] = (wall, sum(o[2] for o in out) / workers, sum(o[1] for o in out))
    scale = 10_000 / users
    projected = "" if users == 10_000 else " (projected from the run)"
    render, build, mime = (results[m][1] * scale for m in ("render", "build", "message"))
    part.add(f"10,000 digests built + rendered (text + HTML){projected}", round(build, 1), "s", round(render, 1),
             "render only, precomputed", "<= 30 s", build <= 30)
    part.add(f"10,000 digests built + whole MIME message{projected}", round(mime, 1), "s", round(render, 1),
             "render only, precomputed", "(<= 30 s)", mime <= 30)
    part.add(f"{users:,} digests, wall clock of the message run (synthetic data, pool)",
             round(results["message"][0], 1), "s")
    part.notes.append(f"{workers} worker processes, {meetings} meetings/user, directory of {directory:,} people, "
                      f"average message {results['message'][2] / users / 1024:.1f} KiB; seconds are per worker "
                      "(the timed part summed over chunks / workers), synthetic event generation not timed")
    return part
