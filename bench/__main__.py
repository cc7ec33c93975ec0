"""``python -m bench [--quick] [--only P1,P3] [--json FILE]``: calsync's speed and scale targets, P1-P6, P9, P10.

Each part measures a baseline in the same run and prints the ratio; the table goes to stdout and
everything to JSON (``bench/results-quick.json`` or ``bench/results.json``). It starts what it needs
(redis-server, a SecantusDB wire server, the emulator, gunicorn, rq workers) on loopback and stops all
of it. Redis: a redis-server of its own on a free port, or ``CALSYNC_BENCH_REDIS_URL`` (e.g.
``redis://127.0.0.1:6379/14``: that database is flushed before and after). ``--quick`` takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from bench import common
from bench.common import Part
from harness.loopback import free_port, stop_process
from harness.waiting import wait_until

PARTS = ("P1", "P2", "P3", "P4", "P5", "P6", "P9", "P10", "P11", "P12")
INSTALL = "scripts/install-bench-deps.sh"


@dataclass
class Context:
    quick: bool
    work: Path
    redis_url: str
    mongo: object = None
    memory: dict[str, float] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)

    def mongodb_uri(self, name: str = "calsync_bench") -> str:
        if self.mongo is None:
            from bench.servers import start_secantus

            self.mongo = start_secantus(self.work / "secantus")
        return f"{self.mongo.uri}/{name}"


def machine() -> dict:
    def first(path: str, prefix: str) -> str:
        try:
            return next((ln.split(":", 1)[1].strip() for ln in Path(path).read_text().splitlines()
                         if ln.startswith(prefix)), "")
        except OSError:
            return ""

    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return {"cpu": first("/proc/cpuinfo", "model name"), "cores": os.cpu_count(),
            "memory": first("/proc/meminfo", "MemTotal"), "kernel": platform.release(),
            "python": platform.python_version(), "redis": _redis_version(), "uptime": uptime}


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if out else ""


def pick_redis(work: Path):
    """(url, server to stop or None): ``CALSYNC_BENCH_REDIS_URL`` if set, else a redis-server of our own on a
    loopback TCP port (appendonly, fsync every second, as a deployment would run it), not shared with
    anything else on the machine, so other processes' Redis traffic does not land in the figures."""
    url = os.environ.get("CALSYNC_BENCH_REDIS_URL")
    if url:
        return url, None
    return start_redis(work / "redis")


def start_redis(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(directory),
                                "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        assert process.poll() is None, "redis-server exited"
        try:
            return redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
            return False

    try:
        wait_until(answers, timeout=10, message="redis-server to start")
    except AssertionError as exc:
        process.kill()
        raise RuntimeError(f"redis-server did not start: {exc}") from None
    return url, _Stoppable(process)


class _Stoppable:
    def __init__(self, process: subprocess.Popen):
        self.process = process

    def stop(self) -> None:
        stop_process(self.process)


def table(parts: list[Part]) -> str:
    lines = [f"{'part':4} {'measure':52} {'value':>11} {'unit':7} {'baseline':>11} {'ratio':>7}  {'target':16} ok"]
    for part in parts:
        for row in part.rows:
            base = "" if row.baseline is None else _fmt(row.baseline)
            ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
            ok = {True: "yes", False: "NO", None: ""}[row.met]
            lines.append(f"{part.key:4} {row.name[:52]:52} {_fmt(row.value):>11} {row.unit[:7]:7} {base:>11} "
                         f"{ratio:>7}  {row.target[:16]:16} {ok}")
            if row.baseline_name:
                lines[-1] += f"  (baseline: {row.baseline_name})"
        for note in part.notes:
            lines.append(f"     note: {note}")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: smaller loads, shorter runs")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts, e.g. P1,P5")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results*.json)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the test suite's tiny run
    args = parser.parse_args(argv)
    wanted = [p.strip().upper() for p in args.only.split(",") if p.strip()]
    for noisy in ("werkzeug", "rq", "service", "mongomock", "emulator", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if ("P1" in wanted or "P6" in wanted) and not common.have_wrk():
        print(f"wrk is missing: run `bash {INSTALL}` (Debian's wrk) first", file=sys.stderr)
        return 2
    from bench import (
        p1_webhook,
        p2_coalescing,
        p3_freshness,
        p4_scale,
        p5_digest,
        p9_weeks,
        p10_import,
        p11_tenant,
        p12_channels,
    )

    runners = {"P1": p1_webhook.run, "P2": p2_coalescing.run, "P3": p3_freshness.run, "P4": p4_scale.run,
               "P5": p5_digest.run, "P9": p9_weeks.run, "P10": p10_import.run, "P11": p11_tenant.run,
               "P12": p12_channels.run}
    work = Path(tempfile.mkdtemp(prefix="calsync-bench-"))
    redis_url, embedded = pick_redis(work)
    ctx = Context(quick=args.quick or args.smoke, work=work, redis_url=redis_url)
    ctx.figures["smoke"] = args.smoke
    parts: list[Part] = []
    started = time.monotonic()
    info = machine()
    try:
        for key in PARTS:
            if key not in wanted or key == "P6":
                continue
            began = time.monotonic()
            print(f"[bench] {key} ...", file=sys.stderr, flush=True)
            part = runners[key](ctx)
            part.seconds = round(time.monotonic() - began, 1)
            parts.append(part)
        if "P6" in wanted:
            parts.append(memory_part(ctx))
    finally:
        if ctx.mongo is not None:
            ctx.mongo.stop()
        redis.Redis.from_url(redis_url).flushdb()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(work, ignore_errors=True)
    info["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    elapsed = time.monotonic() - started
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    print(f"calsync bench ({mode}, {elapsed:.0f} s) on {info['cpu']} x{info['cores']}, {info['memory']}; "
          f"load before: {info['uptime'].split('load average:')[-1].strip()}, "
          f"after: {info['uptime_after'].split('load average:')[-1].strip()}")
    print(table(parts))
    out = args.json or Path(__file__).resolve().parent / f"results{'' if mode == 'full' else '-' + mode}.json"
    out.write_text(json.dumps({"mode": mode, "seconds": round(elapsed, 1), "machine": info,
                               "parts": [{**asdict(p), "rows": [{**asdict(r), "ratio": r.ratio} for r in p.rows]}
                                         for p in parts]}, indent=2) + "\n")
    print(f"results written to {out}")
    return 0


def memory_part(ctx: Context) -> Part:
    part = Part("P6", "peak RSS under the P1 and P3 loads")
    limits = {"web worker (P1 load)": 120.0, "web worker (P3 load)": 120.0, "job worker (P3 load)": 150.0}
    for name, value in ctx.memory.items():
        if name.startswith("baseline"):
            continue
        limit = limits.get(name)
        web = name.startswith("web")
        part.add(f"peak RSS, {name}", round(value, 1), "MB", ctx.memory.get("baseline: bare Flask worker") if web
                 else None, "bare Flask gunicorn worker" if web else "", f"<= {limit:.0f} MB" if limit else "",
                 value <= limit if limit else None)
    if not ctx.memory:
        part.notes.append("P1/P3 did not run: no memory figures")
    return part


if __name__ == "__main__":
    sys.exit(main())
