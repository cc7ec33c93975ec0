"""Process hygiene with real processes: a web process that cannot start stops gunicorn (its boot error, exit
code 3) with one line, and ``calsync dev`` stops within 10 s on a signal to its whole process group (as
Ctrl-C in a terminal or a service manager sends it), children included, without retrying the Redis it
started and has to stop last."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.loopback import free_port
from harness.waiting import wait_until
from tests.support.processes import descendants, embedded_env, running, wait_ready

ROOT = Path(__file__).resolve().parents[2]
REDIS_LINE = "calsync: configuration error: REDIS_URL: must be set to serve with gunicorn"
RETRYING = "could not connect to Redis"


def gunicorn(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["gunicorn", "--bind", f"127.0.0.1:{free_port()}", *args, "wsgi:app"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def plain_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = embedded_env(tmp_path)
    env.update(PYTHONPATH=str(ROOT), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


def test_gunicorn_without_redis_url_stops_at_once_with_one_line(tmp_path):
    started = time.monotonic()
    result = gunicorn(["--workers", "2"], plain_env(tmp_path), ROOT)   # gunicorn.conf.py checks in the master

    assert result.returncode == 3, result.stderr
    assert result.stderr.count(REDIS_LINE) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Booting worker" not in result.stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_that_cannot_boot_stops_gunicorn_instead_of_being_restarted(tmp_path, workers):
    """Without gunicorn.conf.py (another working directory) the check happens in each worker: exit code 3.

    With two workers failing at once gunicorn 27 still stops, but the second exit arrives while it halts
    and it ends with its own traceback and code 1 (the master check in gunicorn.conf.py avoids that)."""
    env = plain_env(tmp_path, REDIS_URL="redis://127.0.0.1:1/0", CALSYNC_HTTP_TIMEOUT="soon")

    result = gunicorn(["--workers", str(workers), "--pythonpath", str(ROOT)], env, tmp_path)

    line = "calsync: configuration error: CALSYNC_HTTP_TIMEOUT: must be a number"
    assert result.returncode == 3 if workers == 1 else result.returncode in (1, 3), result.stderr
    assert 1 <= result.stderr.count(line) <= workers, result.stderr      # once per worker, never a restart loop
    assert "Worker failed to boot" in result.stderr
    assert "wsgi.py" not in result.stderr and "/service/" not in result.stderr    # no traceback of ours


def start_dev_group(env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from service.cli import main; main()", "dev", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop_group(process: subprocess.Popen, sig: int) -> tuple[str, float, list[int]]:
    """Signal the whole group (a terminal's Ctrl-C, a service manager's stop); output, seconds to exit, the tree."""
    tree = descendants(process.pid)
    started = time.monotonic()
    os.killpg(process.pid, sig)
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            for pid in [*descendants(process.pid), process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.communicate(timeout=10)
    return output, time.monotonic() - started, tree


def test_calsync_dev_embedded_stops_on_sigterm_to_its_group_within_10s(tmp_path):
    port = free_port()
    process = start_dev_group(embedded_env(tmp_path), port)
    ready = wait_ready(port, 30)

    output, seconds, tree = stop_group(process, signal.SIGTERM)

    assert ready is not None and ready.status_code == 200, output
    assert tree, "the embedded redis-server should have been a child process"
    assert seconds < 10, output
    # Redis is stopped last, after the worker; on a starved machine the worker may still be finishing a
    # job then, and it leaves at its next look (one line at most), never retrying on and on.
    assert output.count(RETRYING) <= 1, output
    assert "calsync dev stopped" in output, output
    wait_until(lambda: not [pid for pid in tree if running(pid)], timeout=10,
               message="every process to exit (else they are orphaned)")


@pytest.mark.wire
def test_calsync_dev_procfile_mode_stops_on_ctrl_c_to_its_group_within_10s(tmp_path, mongodb_uri):
    """Procfile mode with its own embedded Redis: every process (gunicorn workers, rq workers) goes first."""
    port = free_port()
    env = plain_env(tmp_path, MONGODB_URI=mongodb_uri)
    process = start_dev_group(env, port)
    ready = wait_ready(port, 60)
    # redis-server, 4 shells, gunicorn master + 2 workers, 2 rq workers, scheduler
    wait_until(lambda: len(descendants(process.pid)) >= 8, timeout=60, message="every process to start")

    output, seconds, tree = stop_group(process, signal.SIGINT)

    assert ready is not None and ready.status_code == 200, output
    assert len(tree) >= 8, tree    # redis-server, 4 shells, gunicorn master + 2 workers, 2 rq workers, scheduler
    assert seconds < 10, output
    assert output.count(RETRYING) <= 1, output
    wait_until(lambda: not [pid for pid in tree if running(pid)], timeout=10,
               message="every process to exit (else they are orphaned)")
    assert list((tmp_path / "var" / "prometheus").glob("*.db")), "the processes shared no metrics directory"
