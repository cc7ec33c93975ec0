"""Metrics across processes, as deployed: gunicorn with two workers and a real rq worker running a job, all
writing to one PROMETHEUS_MULTIPROC_DIR; a scrape of either gunicorn worker adds up
every process's samples, and an exited gunicorn worker's live gauge is dropped (mark_process_dead)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from harness.loopback import free_port
from harness.topology import group_members, signal_group, wait_for_groups
from harness.waiting import wait_until
from service import queues
from service.workers import jobs
from tests.support.serving import OPS_TOKEN

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK = (("endpoint", "webhooks.changes"), ("method", "GET"), ("status", "200"))
PING = (("function", "ping"), ("queue", "maintenance"), ("status", "finished"))


def environment(tmp_path: Path, redis_url: str, metrics_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_") and k not in ("MONGODB_URI",)}
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "CALSYNC_OPS_TOKEN": OPS_TOKEN,
            "CALSYNC_DATA_DIR": str(tmp_path / "var"), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def per_file(metrics_dir: Path, metric: str, labels: tuple) -> dict[str, float]:
    """The value of one sample in each process's file (file name → value), read as the collector reads them."""
    found = {}
    for path in metrics_dir.glob("counter_*.db"):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, name, labelled, _ = json.loads(key)
            if name == metric and tuple(sorted(labelled.items())) == labels:
                found[path.stem.removeprefix("counter_")] = value
    return found


def gunicorn_workers(master: int) -> list[int]:
    path = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_a_scrape_adds_up_two_gunicorn_workers_and_an_rq_worker(tmp_path, redis_url, redis_conn):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = environment(tmp_path, redis_url, metrics_dir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {OPS_TOKEN}"}
    queues.get_queue(queues.MAINTENANCE, redis_conn).enqueue(jobs.ping, "worker")
    web = subprocess.Popen(["gunicorn", "--workers", "2", "--threads", "4", "--bind", f"127.0.0.1:{port}",
                            "wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        worker = subprocess.run(["rq", "worker", "-w", "service.workers.worker.Worker", "--url", redis_url,
                                 "--burst", queues.MAINTENANCE], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        wait_until(lambda: _answers(f"{base}/healthz"), timeout=30, interval=0.1, message="gunicorn to answer")
        with ThreadPoolExecutor(8) as pool:   # enough concurrent requests that both workers serve some

            def served_by_both() -> bool:
                list(pool.map(lambda _: requests.get(f"{base}/webhooks/graph?validationToken=x", timeout=5),
                              range(40)))
                return len(per_file(metrics_dir, "calsync_http_requests_total", WEBHOOK)) >= 2

            wait_until(served_by_both, timeout=30, interval=0,
                       message="both gunicorn workers to serve requests (one served every request)")
        by_process = per_file(metrics_dir, "calsync_http_requests_total", WEBHOOK)
        scraped = samples(requests.get(f"{base}/metrics", headers=headers, timeout=10).text)

        victim = gunicorn_workers(web.pid)[0]
        os.kill(victim, signal.SIGTERM)   # gunicorn replaces it; its child_exit hook marks it dead
        wait_until(lambda: not (metrics_dir / f"gauge_livesum_{victim}.db").exists(), timeout=15, interval=0.1,
                   message="the stopped worker's live gauges to be marked dead")
        after = samples(requests.get(f"{base}/ops/metrics", headers=headers, timeout=10).text)
    finally:
        signal_group(web.pid, signal.SIGTERM)
        left = wait_for_groups([web.pid], 10)
        signal_group(web.pid, signal.SIGKILL)
        web.wait(timeout=10)

    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert redis_conn.get("calsync:ping:worker") == b"pong"
    assert len(by_process) >= 2 and all(value > 0 for value in by_process.values()), by_process
    assert scraped[("calsync_http_requests_total", WEBHOOK)] == sum(by_process.values())
    assert scraped[("calsync_jobs_total", PING)] == 1                   # recorded by the rq worker...
    job_files = per_file(metrics_dir, "calsync_jobs_total", PING)
    assert len(job_files) == 1 and not set(job_files) & set(by_process), job_files   # in its own file
    assert ("calsync_workers", ()) in scraped                              # and the gauges of this scrape
    assert ("calsync_queue_jobs", (("queue", "sync"), ("state", "queued"))) in scraped
    assert after[("calsync_http_requests_total", WEBHOOK)] >= sum(by_process.values())   # its counters stay
    assert left == [] and group_members(web.pid) == []


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False

