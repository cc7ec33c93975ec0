"""P10: ``people import`` of 5,000 and 50,000 CSV rows on the MongoDB wire server, against a raw bulk upsert of the
same documents into the same kind of collection (the baseline, measured in the same run).

calsync's side is what ``calsync people import FILE`` does after reading the file: parse the CSV, validate every
row (every problem of a row reported), look up who owns each chunk's emails (one query per 1,000 rows) and write
each chunk in one unordered bulk write. The baseline is the least a client can do for the same result: the
already-validated documents, upserted by email through the same unique ``emails`` index, 1,000 to a bulk write.
Targets: at 50,000 rows, at least 0.5x the baseline's rate; the cost per row at 50,000 within 1.5x of that at 5,000
(no cost that grows with the directory).
"""

from __future__ import annotations

import csv
import io
import random
import time
import uuid

import pymongo
from pymongo import UpdateOne

from bench.common import Part
from service import store
from service.insights.people import import_rows, read_rows, validate_person

BATCH = 1000
DISC = "DISC"


def make_csv(rows: int, seed: int = 10) -> str:
    """A people directory as an HR export would have it: every person with DISC, most with an Enneagram type
    (in the ``3w4`` shorthand for some), a third with an alias."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "aliases", "name", "team", "disc.primary", "disc.secondary", "enneagram.type",
                     "enneagram.wing"])
    for n in range(rows):
        primary, secondary = rng.sample(DISC, 2)
        kind = rng.randint(1, 9)
        wing = str(kind % 9 + 1)
        shorthand = n % 4 == 0
        writer.writerow([f"person{n}@example.com", f"p.{n}@alias.example.org" if n % 3 == 0 else "",
                         f"Person {n}", f"Team {n % 60}", primary.lower() if n % 5 == 0 else primary, secondary,
                         f"{kind}w{wing}" if shorthand else str(kind), "" if shorthand else wing])
    return out.getvalue()


def fresh(uri: str, name: str):
    client = pymongo.MongoClient(uri.rsplit("/", 1)[0] + "/" + name, tz_aware=True)
    db = client.get_default_database()
    client.drop_database(db.name)
    store.init_db(db)
    return client, db


def calsync_import(uri: str, text: str) -> tuple[float, int]:
    """Seconds for parse + validate + import of ``text`` into an empty directory; people created."""
    client, db = fresh(uri, "calsync_p10_import")
    try:
        began = time.perf_counter()
        summary = import_rows(db, read_rows(text, "csv"))
        elapsed = time.perf_counter() - began
        if summary.rejected:
            raise RuntimeError(f"P10: {len(summary.rejected)} rows rejected, e.g. {summary.rejected[0]}")
        return elapsed, summary.created
    finally:
        client.drop_database(db.name)
        client.close()


def raw_upserts(uri: str, documents: list[dict]) -> float:
    """Seconds to upsert ``documents`` (already validated) by email, 1,000 to an unordered bulk write."""
    client, db = fresh(uri, "calsync_p10_raw")
    try:
        began = time.perf_counter()
        for start in range(0, len(documents), BATCH):
            db.people.bulk_write([UpdateOne({"emails": doc["primary_email"]},
                                            {"$set": doc, "$setOnInsert": {"_id": uuid.uuid4().hex}}, upsert=True)
                                  for doc in documents[start:start + BATCH]], ordered=False)
        elapsed = time.perf_counter() - began
        if db.people.count_documents({}) != len(documents):
            raise RuntimeError("P10: the raw upserts did not store every document")
        return elapsed
    finally:
        client.drop_database(db.name)
        client.close()


def run(ctx) -> Part:
    part = Part("P10", "people import (CSV, validated, bulk) vs a raw bulk upsert of the same documents")
    small, large = (300, 1_500) if ctx.figures.get("smoke") else (2_000, 20_000) if ctx.quick else (5_000, 50_000)
    uri = ctx.mongodb_uri("calsync_p10")
    figures = {}
    for rows in (small, large):
        text = make_csv(rows)
        documents = [validate_person(raw) for _, raw in read_rows(text, "csv")]
        baseline = raw_upserts(uri, documents)
        seconds, created = calsync_import(uri, text)
        figures[rows] = (seconds, baseline, created)
    for rows in (small, large):
        seconds, baseline, created = figures[rows]
        rate, base_rate = rows / seconds, rows / baseline
        target = "(>= 0.5x)" if rows == small else ">= 0.5x"
        part.add(f"{rows:,} rows imported (parse, validate, bulk)", round(rate), "rows/s", round(base_rate),
                 "raw bulk upsert, same docs", target, rate / base_rate >= 0.5 if rows == large else None)
    per_small = figures[small][0] / small
    per_large = figures[large][0] / large
    part.add(f"cost per row at {large:,} rows (vs at {small:,})", round(per_large * 1e6, 1), "us/row",
             round(per_small * 1e6, 1), f"per row at {small:,}", "<= 1.5x", per_large / per_small <= 1.5)
    part.notes.append(f"{large:,} rows: {figures[large][0]:.1f} s for calsync's import ({figures[large][2]:,} people "
                      f"created), {figures[large][1]:.1f} s for the raw upserts; SecantusDB wire server, "
                      "one client, unordered bulk writes of 1,000")
    return part
