"""Run two store calls at the same moment on two connections, as two worker processes would."""

from __future__ import annotations

import threading
from collections.abc import Callable

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
