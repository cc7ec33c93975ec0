"""``python -m bench.profile_webhook [--seconds 8]``: where a webhook POST's time goes, by py-spy.

Runs the calsync app under the Procfile's gunicorn line with wrk saturating it (as P1 does), samples one
gunicorn worker with py-spy (``pip install py-spy``) and prints the share of samples spent under the
functions that matter (inclusive), busiest first. Used to decide what to change on the hot path.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from bench.__main__ import pick_redis
from bench.common import Processes, children, python_env, wait_port, wrk, wrk_post_script
from bench.p1_webhook import bodies, gunicorn_argv, seed
from harness.loopback import free_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    if not shutil.which("py-spy"):
        print("py-spy is missing: pip install py-spy", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="calsync-profile-"))
    url, embedded = pick_redis(work)
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    script = work / "post.lua"
    wrk_post_script(script, bodies(seed(conn, 1000), 1000))
    env = python_env({"REDIS_URL": url, "CALSYNC_DATA_DIR": str(work / "var"), "CALSYNC_LOG_LEVEL": "WARNING",
                      "MONGODB_URI": "mongodb://127.0.0.1:9/unused"})   # never read: every id is mirrored
    try:
        with Processes(work) as procs:
            port = free_port()
            master = procs.start("web", gunicorn_argv("wsgi:app", port), env)
            wait_port(port)
            target = f"http://127.0.0.1:{port}/webhooks/graph"
            wrk(target, script, 1, 16)
            workers = children(master.pid)       # gunicorn's workers (and any helper process it forks)
            raws = [work / f"profile-{pid}.txt" for pid in workers]
            print(f"sampling gunicorn processes {workers} (master {master.pid}) for {args.seconds}s", file=sys.stderr)
            spies = [subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--duration", str(args.seconds),
                                       "--rate", "200", "--format", "raw", "--output", str(raw), "--nonblocking"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for pid, raw in zip(workers, raws, strict=True)]
            wrk(target, script, args.seconds + 1, 16)
            for spy in spies:
                spy.wait(timeout=60)
        raw = work / "profile.txt"
        raw.write_text("".join(r.read_text() for r in raws if r.exists()))
        report(raw, args.top)
    finally:
        conn.flushdb()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(raw: Path, top: int) -> None:
    inclusive: collections.Counter = collections.Counter()
    total = 0
    text = raw.read_text()
    if os.environ.get("PROFILE_DEBUG"):
        print(text[:3000])
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any(".handle_request (" in f for f in frames):
            continue   # idle threads waiting in accept/select
        n = int(count)
        total += n
        for frame in set(frames):
            inclusive[frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].split("/")[-1]] += n
    print(f"{total} samples in request handling; inclusive share per function:")
    for frame, n in inclusive.most_common(top):
        print(f"{100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    sys.exit(main())
