"""Jobs for the worker tests, importable by a real ``rq worker`` process (PYTHONPATH is the checkout)."""

import time

from rq import get_current_job


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def hold(started: str, release: str, seconds: float = 30) -> str:
    """Push to ``started``, then wait (BLPOP, no polling) until ``release`` gets a value: a job the test keeps
    in RQ's "started" state for as long as it needs."""
    connection = get_current_job().connection
    connection.rpush(started, 1)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:    # in waits shorter than the worker's socket timeout (20 s)
        if connection.blpop([release], timeout=max(1, min(5, round(left)))):
            return "released"
    return "timed out"


def fail() -> None:
    raise RuntimeError("this job fails on purpose")
