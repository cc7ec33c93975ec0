"""Benchmark the Graph webhook receiver against a bare Flask view, under the same gunicorn settings.

    python bench/webhooks.py [--seconds 10] [--connections 16] [--batch 1] [--users 1000]

Both apps run as `gunicorn --workers 2 --threads 4` (the Procfile's web line) on loopback ports, one
after the other in the same run; wrk (a separate process) POSTs realistic notification collections
(valid clientState, subscriptions mirrored in Redis, `--users` distinct mailboxes) for `--seconds` each.
Redis is an embedded redis-server started for the run. Prints throughput and latency percentiles and the
calsync/bare ratios. Bounded in time: about 2 x seconds + startup.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GUNICORN = ["--workers", "2", "--threads", "4", "--timeout", "30", "--log-level", "warning"]


def bare_app():
    """The baseline: a Flask view that reads the body and answers 202, nothing else."""
    from flask import Flask, request

    app = Flask("bare")

    @app.post("/webhooks/graph")
    def receive():
        request.get_data()
        return "", 202

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, deadline: float = 20.0) -> None:
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn on port {port} did not start")


def seed_subscriptions(redis_url: str, users: int) -> list[tuple[str, str]]:
    """Mirror `users` subscriptions into Redis (what a create/renew writes); returns (id, clientState)."""
    import redis

    from service.store import utcnow
    from service.subscriptions import cache

    conn = redis.Redis.from_url(redis_url)
    pairs = []
    for i in range(users):
        subscription_id = f"{i:08d}-0000-4000-8000-{i:012d}"
        state = f"client-state-{i:06d}-" + "q" * 40
        cache.remember(conn, {"_id": subscription_id, "user_id": f"user-{i}", "client_state": state,
                              "expires_at": utcnow() + timedelta(days=3)})
        pairs.append((subscription_id, state))
    conn.close()
    return pairs


def bodies(pairs: list[tuple[str, str]], batch: int, count: int = 500) -> list[str]:
    out = []
    for n in range(count):
        items = []
        for k in range(batch):
            subscription_id, state = pairs[(n * batch + k) % len(pairs)]
            event_id = f"AAMkAGI2{n:06d}{k:03d}"
            items.append({
                "subscriptionId": subscription_id, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
                "changeType": "updated", "clientState": state, "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
                "resource": f"Users/user/Events/{event_id}",
                "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": f"Users/user/Events/{event_id}",
                                 "@odata.etag": 'W/"DwAAABYAAAA"', "id": event_id},
            })
        out.append(json.dumps({"value": items}))
    return out


def lua_script(path: Path, payloads: list[str]) -> None:
    lines = ["local bodies = {"]
    lines += [f"  {json.dumps(p)}," for p in payloads]  # JSON string literals are valid Lua strings here
    lines += [
        "}",
        "local i = 0",
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        "request = function()",
        "  i = i % #bodies + 1",
        "  return wrk.format(nil, nil, nil, bodies[i])",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def run_wrk(port: int, script: Path, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/webhooks/graph"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    return parse_wrk(out)


def parse_wrk(text: str) -> dict:
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        result[f"p{pct}"] = ms(*match.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    result["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors:.*", text)
    result["socket_errors"] = errors.group(0) if errors else ""
    result["requests"] = int(re.search(r"(\d+) requests in", text).group(1))
    return result


def serve(app_spec: str, env: dict, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *GUNICORN, "-b", f"127.0.0.1:{port}", "--pythonpath",
         f"{ROOT},{ROOT / 'bench'}", app_spec],
        env=env, cwd=ROOT,
    )
    wait_ready(port)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1, help="notifications per POST")
    parser.add_argument("--users", type=int, default=1000, help="distinct mailboxes notified")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required (apt-get install wrk)")

    from service.embedded import start_embedded_redis

    work = Path(tempfile.mkdtemp(prefix="calsync-bench-"))
    redis_server = start_embedded_redis(work / "redis")
    processes = []
    try:
        pairs = seed_subscriptions(redis_server.url, args.users)
        script = work / "post.lua"
        lua_script(script, bodies(pairs, args.batch, max(500, -(-args.users // args.batch))))
        env = {**os.environ, "REDIS_URL": redis_server.url, "CALSYNC_DATA_DIR": str(work / "var"),
               "CALSYNC_LOG_LEVEL": "WARNING"}
        results = {}
        for name, spec in (("bare", "webhooks:bare_app()"), ("calsync", "service:create_app()")):
            port = free_port()
            process = serve(spec, env, port)
            processes.append(process)
            run_wrk(port, script, 2, args.connections)  # warm-up (imports, connections)
            results[name] = run_wrk(port, script, args.seconds, args.connections)
            stop(process)
            processes.remove(process)
        import redis

        conn = redis.Redis.from_url(redis_server.url)
        accepted = int(conn.get("calsync:stats:webhook:accepted") or 0)
        queued = conn.llen("rq:queue:sync")
        conn.close()
    finally:
        for process in processes:
            stop(process)
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"gunicorn {' '.join(GUNICORN[:4])}; wrk -t2 -c{args.connections} -d{args.seconds}s; "
          f"{args.batch} notification(s)/POST; {args.users} mailboxes; loopback, embedded redis-server")
    print(f"{'':10}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for name, r in results.items():
        print(f"{name:10}{r['rps']:10.0f}{r['p50']:9.2f}{r['p90']:9.2f}{r['p99']:9.2f}{r['non2xx']:9d}"
              f"  {r['socket_errors']}")
    bare, ours = results["bare"], results["calsync"]
    print(f"ratio calsync/bare: throughput {ours['rps'] / bare['rps']:.2f}x, p50 {ours['p50'] / bare['p50']:.2f}x, "
          f"p99 {ours['p99'] / bare['p99']:.2f}x")
    print(f"notifications accepted by calsync: {accepted}; jobs on the sync queue: {queued} "
          f"(per mailbox one coalesced sync_user + one throttled record_notification)")


if __name__ == "__main__":
    main()
