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
    return "released" if connection.blpop([release], timeout=seconds) else "timed out"


def fail() -> None:
    raise RuntimeError("this job fails on purpose")
