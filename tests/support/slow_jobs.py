"""Jobs for the worker tests, importable by a real ``rq worker`` process (PYTHONPATH is the checkout)."""

import time


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"
