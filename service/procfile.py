"""``calsync dev`` with MONGODB_URI: the Procfile's processes, run locally as they are deployed.

The release step runs first (it must succeed), then web, worker and scheduler run side by side under
honcho's process manager, their output prefixed by name. Ctrl-C or SIGTERM stops them all (SIGKILL for
any still running five seconds later), and so does any one of them exiting, as on a platform that runs
the Procfile. Their metrics meet in PROMETHEUS_MULTIPROC_DIR (``var/prometheus`` unless set), emptied
before they start. Without MONGODB_URI the in-memory store cannot be shared between processes, so
``calsync dev`` runs everything in one process instead (``service.cli.devserver``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from honcho.environ import expand_processes, parse_procfile
from honcho.manager import Manager

from service import metrics
from service.config import Settings

RELEASE = "release"
LONG_RUNNING = ("web", "worker", "scheduler")


class ProcfileNotFound(RuntimeError):
    pass


def find_procfile() -> Path:
    """The Procfile of this checkout (the current directory's, else the one beside the package)."""
    for candidate in (Path.cwd() / "Procfile", Path(__file__).resolve().parents[1] / "Procfile"):
        if candidate.is_file():
            return candidate
    raise ProcfileNotFound("no Procfile here or beside the calsync package: run from a checkout")


def processes(procfile: Path) -> dict[str, str]:
    """Process type → command line, as the Procfile says."""
    return dict(parse_procfile(procfile.read_text()).processes)


def environment(redis_url: str, host: str, port: int, metrics_dir: str | None = None) -> dict[str, str]:
    """The environment every process gets: ours, the Redis they share, the web's bind address, and the
    directory their metrics are shared through (PROMETHEUS_MULTIPROC_DIR)."""
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    if metrics_dir:
        env[metrics.MULTIPROC_ENV] = metrics_dir
    env["PORT"] = str(port)
    # gunicorn binds 0.0.0.0:$PORT when PORT is set; a developer's machine serves loopback only.
    env["GUNICORN_CMD_ARGS"] = f"--bind {host}:{port} {env.get('GUNICORN_CMD_ARGS', '')}".strip()
    return env


def run(settings: Settings, redis_url: str, host: str = "127.0.0.1", port: int = 8000, workers: int = 2) -> int:
    """Run release, then web, ``workers`` rq workers and the scheduler until stopped; the exit code."""
    procfile = find_procfile()
    commands = processes(procfile)
    metrics_dir = os.environ.get(metrics.MULTIPROC_ENV) or str(settings.path("prometheus").resolve())
    metrics.reset_multiprocess_dir(metrics_dir)   # before any process writes: last run's samples are gone
    env = environment(redis_url, host, port, metrics_dir)
    if RELEASE in commands:
        released = subprocess.run(commands[RELEASE], shell=True, env=env, cwd=procfile.parent, check=False)  # noqa: S602 - the Procfile's own line
        if released.returncode != 0:
            return released.returncode
    manager = Manager()
    wanted = {name: commands[name] for name in LONG_RUNNING if name in commands}
    for process in expand_processes(wanted, concurrency={"worker": workers}, env=env):
        manager.add_process(process.name, process.cmd, env=process.env, cwd=str(procfile.parent))
    manager.loop()
    return manager.returncode or 0
