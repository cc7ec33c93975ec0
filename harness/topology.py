"""The Procfile's processes as separate OS processes, for tests that run calsync as it is deployed.

The command lines come from the Procfile itself (parsed by honcho, expanded by the shell as a platform
would); this runner only adds what a test needs and honcho's manager cannot do: kill one process and
start it again while the others keep running. Each process runs in its own process group, so a kill
takes its children (gunicorn workers, rq's scheduler process) with it, and ``stop()`` leaves no orphan.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.waiting import wait_until
from service import metrics, procfile


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
        signal_group(running.process.pid, sig)
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
            signal_group(pgid, signal.SIGTERM)
        wait_for_groups(groups, timeout)
        for pgid in groups:
            signal_group(pgid, signal.SIGKILL)
        left = wait_for_groups(groups, 5)
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


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def wait_for_groups(groups: list[int], timeout: float) -> list[int]:
    """Wait until no process of these groups runs; returns the pids still running at the deadline."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not group_members(*groups), timeout=timeout, interval=0.1,
                   message=f"process groups {groups} to exit")
    return group_members(*groups)


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
