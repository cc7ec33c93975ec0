"""Real processes in tests: the Procfile's command lines, a fresh machine's environment, readiness, and which
processes are still alive below a pid."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import requests

from harness.waiting import wait_until


def wait_ready(port: int, seconds: float) -> requests.Response | None:
    """The first 200 from /readyz within ``seconds`` (else the last answer, or None if nothing answered)."""
    ready = None

    def answered() -> bool:
        nonlocal ready
        try:
            ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy starting
            return False
        return ready.status_code == 200

    with contextlib.suppress(AssertionError):   # the caller asserts on the answer, with its output
        wait_until(answered, timeout=seconds, interval=0.2, message="/readyz to answer 200")
    return ready


def embedded_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh machine: no MongoDB, no Redis, no calsync settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MONGODB_URI", "REDIS_URL") and not k.startswith("CALSYNC_")}
    env["CALSYNC_DATA_DIR"] = str(tmp_path / "var")
    return env


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        found += [child, *descendants(child)]
    return found


ROOT = Path(__file__).resolve().parents[2]


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        process, _, command = line.partition(":")
        if process.strip() == name:
            return command.strip()
    raise AssertionError(f"no {name} line in the Procfile")


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []
