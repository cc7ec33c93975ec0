"""What every benchmark part shares: servers it starts (and always stops), wrk, RSS sampling, results.

Everything runs on loopback. Each part returns a ``Part``: rows of (name, value, baseline, unit, target),
where the baseline is measured in the same run, so the ratio is comparable across machines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.topology import group_members, wait_for_groups
from harness.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


@dataclass
class Part:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, *args, **kwargs) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


def wait_port(port: int, timeout: float = 30.0) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_until(listening, timeout=timeout, message=f"something to listen on port {port}")


class Processes:
    """Child processes, each in its own process group, so stopping one takes its children (gunicorn and
    rq's scheduler process) along. ``stop_all`` leaves nothing behind; used as a context manager."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str] | str, env: dict, shell: bool = False) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as out:
            process = subprocess.Popen(argv, shell=shell, env=env, cwd=ROOT, stdout=out,  # noqa: S602
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.running[name] = process
        return process

    def stop(self, name: str, timeout: float = 10) -> None:
        process = self.running.pop(name, None)
        if process is None:
            return
        _killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        _killpg(process.pid, signal.SIGKILL)
        wait_for_groups([process.pid], 5)
        process.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def procfile_label(pid: int) -> str | None:
    """What a Procfile process is, for per-process figures (None: not counted): a gunicorn worker (not its
    master), a job worker, the RQ scheduler a worker forked, or the scheduler + dispatcher."""
    line, above = cmdline(pid), cmdline(parent(pid))
    if line.startswith("/bin/sh"):
        return None                                  # the Procfile line's shell
    if "gunicorn" in line and "gunicorn" in above:
        return "web worker"
    if "rq worker" in line or "rq:" in line:
        forked = ("rq worker" in above or "rq:" in above) and not above.startswith("/bin/sh")
        return "rq scheduler, forked by a worker" if forked else "job worker"
    if "calsync scheduler" in line:
        return "scheduler + dispatcher"
    return None


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


class PeakRSS:
    """Samples the RSS of every process of some process groups every 200 ms; the peak per label.

    ``label(pid)`` names what a process is (``None``: not counted), e.g. a gunicorn worker vs its master.
    """

    def __init__(self, groups: list[int], label, every: float = 0.2):
        self.groups, self.label, self.every = groups, label, every
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for pid in group_members(*self.groups):        # one pass over /proc per sample
                name = self.label(pid)
                if name:
                    self.peak[name] = max(self.peak.get(name, 0.0), rss_mb(pid))

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ------------------------------------------------------------------ wrk

def wrk(url: str, script: Path, seconds: float, connections: int, rate: int | None = None,
        threads: int = 1) -> dict:
    """Run wrk (a separate process) and parse its summary; ``rate`` uses wrk2's -R when wrk has it."""
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency",
            "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse_wrk(done.stdout)


def parse_wrk(text: str) -> dict:
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        result[f"p{pct}"] = ms(*match.groups()) if match else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    result["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors:\s*(.*)", text)
    result["socket_errors"] = errors.group(1) if errors else ""
    result["requests"] = int(re.search(r"(\d+) requests in", text).group(1))
    return result


def wrk_post_script(path: Path, bodies: list[str], paced_rps_per_conn: float | None = None) -> None:
    """A wrk Lua script POSTing ``bodies`` round robin; ``paced_rps_per_conn`` spaces each connection's
    requests (wrk's ``delay()`` hook) so the offered load is about connections x that rate."""
    import json

    lines = ["local bodies = {"] + [f"  {json.dumps(b)}," for b in bodies] + ["}"]
    lines += [
        "local i = 0",
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        "request = function()",
        "  i = i % #bodies + 1",
        "  return wrk.format(nil, nil, nil, bodies[i])",
        "end",
    ]
    if paced_rps_per_conn:
        lines += ["delay = function()", f"  return {1000.0 / paced_rps_per_conn:.3f}", "end"]
    path.write_text("\n".join(lines) + "\n")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def python_env(extra: dict | None = None) -> dict:
    """The environment for child processes: this tree first on PYTHONPATH, this interpreter's bin on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_") and k not in ("MONGODB_URI",
                                                                                              "REDIS_URL")}
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]
