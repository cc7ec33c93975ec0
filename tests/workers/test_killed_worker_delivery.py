"""A real ``rq worker`` (the Procfile's worker class) SIGKILLed in the middle of sending a person's Teams card:
another worker delivers it, once, within about half a minute and with nobody's help (no claim aged by hand, no
job enqueued again by the test). The job is P12's (``bench.p12_channels.deliver_one``: calsync's dispatch with
its per-channel claim); Graph holds the app installation the send starts with, so the kill lands after the claim
and before the card reaches the Bot Connector."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rq import Queue
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry

from bench import p12_channels as p12
from bench.common import python_env
from emulator.testing import running_emulator
from harness.topology import group_members
from harness.waiting import wait_until
from service import queues
from service.config import Settings
from service.runtime import Runtime
from service.store import init_db

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "killed-worker"
HOLD = 25          # seconds Graph holds the first installation request


def _worker(settings: Settings, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "rq.cli", "worker", "-w", "service.workers.worker.Worker", "--url",
               settings.redis_url, "--with-scheduler", QUEUE]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=python_env(p12.worker_env(settings)), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
@pytest.mark.wire
def test_a_card_whose_worker_was_killed_mid_send_is_delivered_once_by_another(tmp_path, mongodb_uri, redis_url,
                                                                             redis_conn):
    workers: list[subprocess.Popen] = []
    with running_emulator(tmp_path / "emulator") as emu:
        settings = Settings(public_url="http://127.0.0.1:9", mongodb_uri=mongodb_uri, redis_url=redis_url,
                            data_dir=str(tmp_path / "var"), http_timeout=30.0)
        settings = settings.with_overrides(**emu.settings_overrides())
        rt = Runtime(settings)
        try:
            init_db(rt.db)
            (uid,), _ = p12.people(rt, emu, "teams", 1)
            record = f"digest:{uid}"
            emu.control.request("PUT", "/faults", {"path_prefix": "/users/", "script": [{"status": 200,
                                                                                          "delay": HOLD}]})
            job = Queue(QUEUE, connection=redis_conn).enqueue(p12.deliver_one, uid, record,
                                                               retry=queues.DEFAULT_RETRY, job_timeout=120)
            workers.append(_worker(settings, tmp_path / "first.log"))

            def claim() -> dict | None:
                return rt.db.channel_sends.find_one({"_id": f"{record}:teams"})

            wait_until(lambda: claim() is not None, timeout=60, message="the first worker to claim the card")
            held = claim()
            assert held["status"] == "sending" and held["holder"].startswith(f"{job.id}:")
            os.killpg(workers[0].pid, signal.SIGKILL)
            workers[0].wait(timeout=10)
            wait_until(lambda: not group_members(workers[0].pid), timeout=10, message="the killed worker to go")
            assert emu.emulator.teams.sent(uid) == []

            workers.append(_worker(settings, tmp_path / "second.log"))
            wait_until(lambda: emu.emulator.teams.sent(uid), timeout=HOLD + 45, interval=0.2,
                       message="the card, sent by the second worker")
            wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=30,
                       message="the retried job to finish")

            assert len(emu.emulator.teams.sent(uid)) == 1
            done = claim()
            assert done["status"] == "sent" and done["attempts"] == 2 and done["holder"] != held["holder"]
            assert ScheduledJobRegistry(QUEUE, connection=redis_conn).get_job_ids() == []   # nothing left to run
        finally:
            for worker in workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGTERM)
                    worker.wait(timeout=30)
            rt.close()
