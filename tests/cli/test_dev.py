import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from rq import Worker

from harness.loopback import free_port
from harness.waiting import wait_until
from service.config import DEV_OPS_TOKEN
from tests.support.processes import children_of, descendants, embedded_env, running, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def start_dev(env: dict[str, str], port: int) -> subprocess.Popen:
    """``calsync dev`` from this worktree's code, its output collected."""
    return subprocess.Popen(
        [sys.executable, "-c", "from service.cli import main; main()", "dev", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@contextlib.contextmanager
def dev_process(env: dict[str, str], port: int) -> Iterator[subprocess.Popen]:
    """``start_dev``, killed if still running at the end and always reaped with its pipe closed (a leaked Popen
    raises ResourceWarnings in whatever test runs next on that worker)."""
    process = start_dev(env, port)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def test_calsync_dev_serves_on_embedded_defaults_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    with dev_process(embedded_env(tmp_path), port) as process:
        ready = wait_ready(port, 30)
        children = children_of(process.pid)

        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)

    assert ready is not None and ready.status_code == 200, output
    assert ready.json()["checks"] == {"mongodb": "ok", "redis": "ok"}
    assert process.returncode == 0, output
    assert "NOTHING PERSISTS" in output  # the loud warning about the in-memory store
    assert children, "the embedded redis-server should have been a child process"
    wait_until(lambda: not [pid for pid in children if Path(f"/proc/{pid}").exists()], timeout=10,
               message="the child processes to exit (else they are orphaned)")


def signal_thread(pid: int, tid: int, sig: int) -> None:
    """Send ``sig`` to one thread of ``pid`` (glibc's tgkill), as the kernel may when it picks the thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


def test_ctrl_c_stops_calsync_dev_when_the_kernel_hands_it_to_another_thread(tmp_path):
    """A process-wide signal goes to any thread that does not block it. Python runs its handler in the main
    thread, but only once that thread runs Python again: a main thread blocked in an untimed wait never did, and
    Ctrl-C was lost (one CI run in six hung here). The signal is sent to a worker thread on purpose."""
    port = free_port()
    with dev_process(embedded_env(tmp_path), port) as process:
        ready = wait_ready(port, 30)
        others = sorted(int(tid) for tid in os.listdir(f"/proc/{process.pid}/task") if int(tid) != process.pid)
        assert others, "calsync dev runs its parts as threads"
        signal_thread(process.pid, others[0], signal.SIGINT)   # the first part started: the web server
        output, _ = process.communicate(timeout=15)

    assert ready is not None and ready.status_code == 200, output
    assert process.returncode == 0, output


@pytest.mark.wire
def procfile_started(pid: int) -> list[str]:
    """The command lines under ``calsync dev`` once the Procfile's four lines run (gunicorn with its workers)."""
    commands = [cmdline for child in descendants(pid) if (cmdline := command_line(child))]
    shells = [c.removeprefix("/bin/sh -c ") for c in commands if c.startswith("/bin/sh -c ")]
    complete = sorted(line.split()[0] for line in shells) == ["calsync", "gunicorn", "rq", "rq"]
    gunicorns = sum("gunicorn" in c and "sh -c" not in c for c in commands)   # master and workers
    return commands if complete and gunicorns >= 2 else []


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_calsync_dev_with_mongodb_uri_runs_the_procfile_processes_and_sigterm_stops_them_all(
        tmp_path, mongodb_uri, redis_url):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    env.update(MONGODB_URI=mongodb_uri, REDIS_URL=redis_url, CALSYNC_DATA_DIR=str(tmp_path / "var"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    process = start_dev(env, port)
    try:
        ready = wait_ready(port, 60)
        commands = wait_until(lambda: procfile_started(process.pid), timeout=60,
                              message="every Procfile process to start")
        tree = descendants(process.pid)

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        if process.poll() is None:   # never leave a worker behind to steal other tests' jobs
            for pid in [*descendants(process.pid), process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    assert ready is not None and ready.status_code == 200, output
    assert commands
    assert stopped_in < 10, output
    wait_until(lambda: not [pid for pid in tree if running(pid)], timeout=10,
               message="every process to exit (else they are orphaned)")


def test_the_embedded_worker_shows_as_one_live_worker_for_seconds_on_end(tmp_path, redis_url, redis_conn):
    port = free_port()
    env = {**embedded_env(tmp_path), "REDIS_URL": redis_url}  # in-process mode, on the test's Redis
    seen, names = [], set()
    with dev_process(env, port) as process:
        ready = wait_ready(port, 30)
        for _ in range(12):  # six seconds: a worker that re-registered when idle would show as several
            health = requests.get(f"http://127.0.0.1:{port}/ops/api/health", timeout=5,
                                  headers={"Authorization": f"Bearer {DEV_OPS_TOKEN}"})
            seen.append(health.json()["workers"])
            names |= {worker.name for worker in Worker.all(connection=redis_conn)}
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)

    assert ready is not None and ready.status_code == 200, output
    assert seen == [1] * 12
    assert len(names) == 1, names
    assert Worker.all(connection=redis_conn) == []  # it left the registry when stopped
