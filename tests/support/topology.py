"""The Procfile's processes as separate OS processes, for tests that run calsync as it is deployed.

The command lines come from the Procfile itself (parsed by honcho, expanded by the shell as a platform
would); this runner only adds what a test needs and honcho's manager cannot do: kill one process and
start it again while the others keep running. Each process runs in its own process group, so a kill
takes its children (gunicorn workers, rq's scheduler process) with it, and ``stop()`` leaves no orphan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry, StartedJobRegistry

from service import metrics, procfile, queues
from tests.support.calendars import expected, stored


@dataclass
class Running:
    name: str
    process: subprocess.Popen
    log: Path


@dataclass
class Topology:
    env: dict[str, str]
    log_dir: Path
    root: Path = field(default_factory=lambda: procfile.find_procfile().parent)
    running: dict[str, Running] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.commands = procfile.processes(self.root / "Procfile")
        # The processes' metrics meet here (prometheus-client's multiprocess mode), fresh for each topology.
        self.env.setdefault(metrics.MULTIPROC_ENV, str(self.log_dir / "prometheus"))
        self.metrics_dir = metrics.reset_multiprocess_dir(self.env[metrics.MULTIPROC_ENV])

    def release(self, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.commands["release"], shell=True, env=self.env, cwd=self.root,  # noqa: S602
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, kind: str, index: int = 1) -> Running:
        name = f"{kind}.{index}"
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(self.commands[kind], shell=True, cwd=self.root,  # noqa: S602
                                       env={**self.env, "HONCHO_PROCESS_NAME": name},
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.running[name] = Running(name, process, log)
        return self.running[name]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a process's whole group and wait for its shell to go."""
        running = self.running.pop(name)
        _signal_group(running.process.pid, sig)
        running.process.wait(timeout=30)

    def pids(self, name: str) -> list[int]:
        """Every pid in a process's group (the shell, the program and its children)."""
        return group_members(self.running[name].process.pid)

    def alive(self, name: str) -> bool:
        return name in self.running and self.running[name].process.poll() is None

    def stop(self, timeout: float = 10) -> list[int]:
        """SIGTERM every group, SIGKILL what is left after ``timeout``; returns pids still alive (none)."""
        groups = [r.process.pid for r in self.running.values()]
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        _wait_for_groups(groups, timeout)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        left = _wait_for_groups(groups, 5)
        for running in self.running.values():
            running.process.wait(timeout=5)
        self.running.clear()
        return left

    def tail(self, lines: int = 40) -> str:
        """The end of every process's log, for assertion messages."""
        out = []
        for log in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_for_groups(groups: list[int], timeout: float) -> list[int]:
    """Wait until no process of these groups runs; returns the pids still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = group_members(*groups)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def group_members(*pgids: int) -> list[int]:
    """Running (not zombie) processes of the given process groups, from one pass over /proc."""
    wanted, members = set(pgids), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in wanted:
            members.append(int(entry.name))
    return members


# ----- shared by the topology test and the chaos suites -------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def wait_until(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


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
