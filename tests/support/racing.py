"""Run two store calls at the same moment on two connections, as two worker processes would."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pymongo


def race(mongodb_uri: str, *actions: Callable) -> list:
    """Run each ``action(db)`` on its own client, all released together; returns their results in order."""
    barrier = threading.Barrier(len(actions))
    results: list = [None] * len(actions)
    errors: list[BaseException] = []

    def run(position: int, action: Callable) -> None:
        with pymongo.MongoClient(mongodb_uri, tz_aware=True) as client:
            db = client.get_default_database()
            barrier.wait()
            try:
                results[position] = action(db)
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results


def version(graph_id: str, n: int) -> dict:
    """A delta item of event ``graph_id`` at version ``n`` (later versions have later lastModifiedDateTime)."""
    modified = (NOW - timedelta(hours=1) + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    start = {"dateTime": "2030-01-01T09:00:00.0000000", "timeZone": "UTC"}
    end = {"dateTime": "2030-01-01T10:00:00.0000000", "timeZone": "UTC"}
    return {"id": graph_id, "subject": f"v{n}", "start": start, "end": end, "lastModifiedDateTime": modified,
            "changeKey": f"ck{n}", "body": {"content": "SECRET"}}


def removed(graph_id: str) -> dict:
    return {"id": graph_id, "@removed": {"reason": "deleted"}}


NOW = datetime.now(UTC).replace(microsecond=0)
