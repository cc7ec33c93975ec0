"""What the topology test and the chaos suites check on the Procfile's processes (harness.topology runs them):
their environment, the difference between what MongoDB holds and the emulator's truth, subscriptions, readiness
and the digest tick."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import requests
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry, StartedJobRegistry

from harness.loopback import free_port
from harness.topology import Topology
from service import queues
from tests.support.calendars import expected, stored
from tests.support.serving import OPS_TOKEN

ROOT = Path(__file__).resolve().parents[2]


def environment(tmp_path, emulator, mongodb_uri, redis_url, smtp_inbox, port, ops_token: str) -> dict[str, str]:
    """The Procfile processes' environment: this checkout, the emulator, the wire server, Redis and SMTP."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CALSYNC_") and k not in ("MONGODB_URI", "REDIS_URL")}
    return {**env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),
            "MONGODB_URI": mongodb_uri, "REDIS_URL": redis_url,
            "CALSYNC_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CALSYNC_GRAPH_URL": emulator.graph_url, "CALSYNC_AUTHORITY_HOST": emulator.authority_host,
            "CALSYNC_CA_BUNDLE": emulator.ca_bundle, "CALSYNC_SMTP_URL": smtp_inbox.url,
            "CALSYNC_OPS_TOKEN": ops_token, "CALSYNC_DATA_DIR": str(tmp_path / "var"),
            # No digest is due when a user connects (their zone is a midday_zone): a test that wants one
            # makes it due with clock.digest_due_today, after the settings it depends on are in place.
            "CALSYNC_DIGEST_TIME": "23:59",
            "PORT": str(port), "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}"}


def procfile_topology(tmp_path, emulator, mongodb_uri, redis_url, smtp_inbox, **extra: str):
    """The Procfile's processes, not started yet, on a free port with their logs under ``tmp_path/logs``; and the
    stack the support helpers take (the web's url and the emulator). ``extra`` adds to their environment."""
    port = free_port()
    (tmp_path / "logs").mkdir()
    env = environment(tmp_path, emulator, mongodb_uri, redis_url, smtp_inbox, port, OPS_TOKEN) | extra
    return Topology(env, tmp_path / "logs"), SimpleNamespace(url=f"http://127.0.0.1:{port}", emulator=emulator)


def differences(db, control, user_id: str, window) -> list[str]:
    """What the user's stored window lacks, has extra, or holds otherwise than the emulator's truth."""
    start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in window)
    truth = {item["id"]: expected(item) for item in control.calendar(user_id, start, end)}
    mine = {doc["graph_id"]: stored(doc) for doc in db.events.find({"user_id": user_id})}
    problems = [f"missing {g[-8:]}" for g in truth.keys() - mine.keys()]
    problems += [f"extra {g[-8:]}" for g in mine.keys() - truth.keys()]
    problems += [f"differs {g[-8:]} in {_fields_apart(truth[g], mine[g])}"
                 for g in truth.keys() & mine.keys() if truth[g] != mine[g]]
    return problems


def _fields_apart(want: dict, got: dict) -> list[str]:
    return sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))


def active(control) -> list[dict]:
    return [s for s in control.subscriptions() if s["status"] == "active"]


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def digest_tick_done(redis_conn, after: float) -> bool:
    """A digest tick enqueued after ``after`` has finished, and every digest it queued has run."""
    digest = Queue(queues.DIGEST, connection=redis_conn)
    finished = Job.fetch_many(FinishedJobRegistry(queue=digest).get_job_ids(), connection=redis_conn)
    ticked = any(job is not None and job.func_name == queues.DIGEST_TICK and job.enqueued_at is not None
                 and job.enqueued_at.timestamp() > after for job in finished)
    return ticked and digest.count == 0 and StartedJobRegistry(queue=digest).count == 0
