"""Chaos on the Procfile topology (issue 16): R1 convergence, R4 outages, R3 secrets. The tests run in
file order on one topology (tests/chaos/conftest.py), each printing its figures; R3 scans what the whole
run left behind.

- R1: random single and recurring changes for every user while Graph duplicates, reorders and drops
  notifications (a drop is followed by ``missed``), a 429 storm, worker processes SIGKILLed mid-job on a
  period (a worker runs its jobs itself, so the process group is the job's process) and replaced, the
  Redis server SIGKILLed and restarted with its data, and a subscription removed by Graph.
  After draining: 0 differences between MongoDB and the emulator's truth, and a new subscription.
- R4: Redis down while notifications arrive (503 with Retry-After; every change lands once Redis is back
  and Graph redelivers); MongoDB cut under the workers (jobs fail and retry with back-off; nothing lost);
  the scheduler SIGKILLed and restarted (a new leader ticks; no subscription lapses; no digest twice).
- R5: Redis SIGKILLed and restarted empty mid-run: noticed within 30 s (the epoch marker is gone), the mirror
  rebuilt and every user resynced from MongoDB; 0 differences, still one digest per user.
- R6: MongoDB rolled back to a copy of its collections taken earlier in the run (changes and a replaced
  subscription since), then ``calsync init-db`` and ``calsync recover``: one subscription per user at Graph,
  the one stored; 0 differences; still one digest per user.
- R3: no access, refresh or id token, clientState, client secret, Fernet key or other configured secret
  in a dump of MongoDB and Redis, in any process's log, or in any response the suite received.
"""

from __future__ import annotations

import json
import subprocess
import time
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

import pytest
import redis as redis_lib
from bson import json_util
from rq import Queue, Worker
from rq.registry import StartedJobRegistry

from harness.waiting import wait_until
from service.config import SECRET_FIELDS, Settings
from service.identity import crypto
from service.store import digests
from tests.support.calendars import Calendar
from tests.support.chaos import CHANGES, KILL_EVERY, LONG, STORM_SECONDS, USERS
from tests.support.clock import local_today
from tests.support.serving import OPS_TOKEN
from tests.support.topology import active, digest_tick_done

pytestmark = [pytest.mark.slow, pytest.mark.wire, pytest.mark.xdist_group("chaos")]   # one topology, one worker

BASE_FAULTS = {"duplicate_rate": 0.10, "reorder_rate": 0.10, "drop_rate": 0.05}


def busy_worker(chaos) -> str | None:
    """The topology name of a worker running a sync job now, if any."""
    conn = redis_lib.Redis.from_url(chaos.redis.url)
    try:
        for worker in Worker.all(connection=conn):
            job = worker.get_current_job()
            if job is not None and job.func_name.endswith("sync_user"):
                for name in chaos.supervisor.names("worker"):
                    if worker.pid in chaos.topology.pids(name):
                        return name
    except redis_lib.RedisError:
        return None
    finally:
        conn.close()
    return None


def outcomes(control) -> Counter:
    return Counter(d.get("outcome") for d in control.deliveries())


def test_r1_every_change_converges_through_duplicates_drops_429s_killed_workers_and_a_redis_crash(chaos):
    epoch_before = _epoch(chaos.db)
    control, supervisor, rng = chaos.control, chaos.supervisor, chaos.rng
    calendars = [Calendar(control, person, rng) for person in chaos.people]
    control.clear_deliveries()
    control.set_faults(**BASE_FAULTS, seed=16)
    started = last_kill = time.monotonic()
    storm = range(int(CHANGES * 0.2), int(CHANGES * 0.3))
    worker_kills = 0
    removed = None
    for done in range(1, CHANGES + 1):
        rng.choice(calendars).step()
        if done == storm.start:
            control.set_faults(**BASE_FAULTS, rate_429=0.3, retry_after="1", seed=17)
            storm_began = time.monotonic()
        if done == storm.stop:
            time.sleep(max(0.0, STORM_SECONDS - (time.monotonic() - storm_began)))   # the syncs meet it too
            control.set_faults(**BASE_FAULTS, seed=18)
        if time.monotonic() - last_kill >= KILL_EVERY:
            last_kill = time.monotonic()
            supervisor.kill(busy_worker(chaos) or supervisor.names("worker")[0])   # mid-sync, as a lost machine
            worker_kills += 1
        if done == int(CHANGES * 0.4):
            chaos.redis.kill()                   # a crash; the append-only file keeps what was acknowledged
            time.sleep(1)
            chaos.redis.start()
        if done == int(CHANGES * 0.6):
            victim = chaos.people[-1]["id"]
            removed = next(s for s in active(control) if s["resource"].endswith(f"{victim}/events"))
            control.remove_subscription(removed["id"])
        supervisor.revive()
    # Faults are drawn per delivery, and the emulator batches: 240 changes over 3 users can make as few as
    # 14 deliveries, none of them duplicated at 10% (23% of runs). Keep changing, one batch window apart,
    # until both a duplicate and a drop have happened, so every run exercises both.
    extra = 0
    while not all(outcomes(control)[o] for o in ("duplicate", "dropped")) and extra < CHANGES:
        rng.choice(calendars).step()
        extra += 1
        time.sleep(0.06)
    changed = time.monotonic()
    control.clear_faults()
    control.wait_idle(timeout=120)
    # A SIGKILL mid-sync keeps that user's lock until RQ retries the job (about 90 s) or the lock expires.
    converged = chaos.converge("R1 convergence", timeout=600 if LONG else 240)
    wait_until(lambda: removed["id"] not in {s["id"] for s in active(control)} and len(active(control)) == USERS,
               timeout=120, interval=0.5, message="a new subscription for the removed one")
    seen = outcomes(control)
    throttled = sum(1 for r in control.graph_requests() if r.get("status") == 429)
    chaos.figures["r1"] = figures = {
        "users": USERS, "changes": CHANGES + extra, "changes_per_s": round((CHANGES + extra) / (changed - started), 1),
        "deliveries": dict(seen), "graph_429s": throttled, "worker_kills": worker_kills,
        "redis_restarts": chaos.redis.restarts,
        "processes_revived": supervisor.restarted, "converged_s_after_last_change": round(converged, 1),
        "events_stored": chaos.db.events.count_documents({}), "differences": 0,
    }
    print(f"R1: {json.dumps(figures)}")
    assert chaos.differences() == {}
    assert worker_kills >= 1 and chaos.redis.restarts >= 1
    assert seen["duplicate"] > 0 and seen["dropped"] > 0
    assert _epoch(chaos.db) == epoch_before   # a Redis restarted with its data is not taken for an emptied one


def test_r4_outages_lose_nothing(chaos):
    epoch_before = _epoch(chaos.db)
    control, supervisor = chaos.control, chaos.supervisor
    calendars = [Calendar(control, person, chaos.rng) for person in chaos.people]
    for calendar in calendars:   # ids to update and delete
        calendar.ids = [doc["graph_id"] for doc in chaos.db.events.find({"user_id": calendar.user["id"],
                                                                         "series_master_id": None}).limit(20)]
    figures = chaos.figures["r4"] = {}

    # Redis down while notifications arrive: the webhook says 503 with Retry-After, Graph redelivers.
    control.clear_deliveries()
    chaos.redis.kill()
    answer = chaos.http().post(f"{chaos.url}/webhooks/graph", json={"value": [{
        "subscriptionId": active(control)[0]["id"], "clientState": "x", "changeType": "updated"}]}, timeout=30)
    for _ in range(20 if not LONG else 200):
        chaos.rng.choice(calendars).step()
    wait_until(lambda: any(d.get("status") == 503 for d in control.deliveries()),
               timeout=30, interval=0.5, message="a notification refused with 503")
    time.sleep(2)
    chaos.redis.start()
    control.wait_idle(timeout=120)
    figures["redis_down"] = {"webhook_answer": answer.status_code, "retry_after": answer.headers.get("Retry-After"),
                             "deliveries": dict(outcomes(control)),
                             "converged_s": round(chaos.converge("R4 Redis outage", timeout=240), 1)}
    assert answer.status_code == 503 and answer.headers.get("Retry-After")
    assert _epoch(chaos.db) == epoch_before   # an outage is not a loss: no recovery ran

    # MongoDB unavailable under the workers: their jobs fail and are retried with back-off.
    failed_before = _job_failures(chaos)
    chaos.proxy.cut()
    for _ in range(20 if not LONG else 200):
        chaos.rng.choice(calendars).step()
    control.wait_idle(timeout=60)
    time.sleep(6)
    chaos.proxy.restore()
    figures["mongodb_cut"] = {"connections_refused": chaos.proxy.refused,
                              "job_failures_logged": _job_failures(chaos) - failed_before,
                              "converged_s": round(chaos.converge("R4 MongoDB outage", timeout=300), 1)}
    assert chaos.proxy.refused > 0

    # The scheduler SIGKILLed while leading, then restarted: a new leader takes over within the lease.
    conn = redis_lib.Redis.from_url(chaos.redis.url)
    killed_at = time.time()
    for name in chaos.supervisor.names("scheduler"):
        new = supervisor.kill(name)
    try:   # the group's pids are read each time: the shell may start the program after a moment
        wait_until(lambda: any(f":{pid}:" in (conn.get("calsync:scheduler:leader") or b"").decode()
                               for pid in chaos.topology.pids(new)),
                   timeout=90, interval=1, message="the new scheduler to lead")
        wait_until(lambda: float(conn.get("calsync:scheduler:last:digest-tick") or 0) > killed_at,
                   timeout=120, interval=1, message="a digest tick by the new leader")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: leader {conn.get('calsync:scheduler:leader')!r}, new {new} pids "
                             f"{chaos.topology.pids(new)}\n{chaos.topology.tail()}") from None
    wait_until(lambda: digest_tick_done(conn, killed_at), timeout=120, interval=0.5,
               message="the new leader's digest tick, and the digests it queued, to finish")   # none is due again
    conn.close()
    today = local_today(chaos.zone).isoformat()
    # Digests sit behind the sync queue (the last queue but two): with 50 users busy syncing, they take a while.

    def unsent() -> dict[str, object]:
        """Each person whose digest is not sent: its record's status, or their digest schedule if none."""
        missing = {}
        for person in chaos.people:
            record = digests.get(chaos.db, person["id"], today) or {}
            if record.get("status") != "sent":
                user = chaos.db.users.find_one({"_id": person["id"]}, {"digest": 1}) or {}
                missing[person["mail"]] = record.get("status") or user.get("digest")
        return missing

    try:
        wait_until(lambda: not unsent(), timeout=600 if LONG else 120, interval=2, message="every user's digest")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: not sent {unsent()}\n{chaos.topology.tail()}") from None
    mails = _digests_after_another_tick(chaos)
    subscriptions = active(control)
    earliest = min(datetime.fromisoformat(s["expirationDateTime"].replace("Z", "+00:00")) for s in subscriptions)
    figures["scheduler"] = {"digests_per_user": sorted(set(mails.values())), "active_subscriptions": len(subscriptions),
                            "earliest_expiry_h": round((earliest - datetime.now(UTC)).total_seconds() / 3600, 1)}
    print(f"R4: {json.dumps(figures)}")
    assert mails == Counter({p["mail"]: 1 for p in chaos.people}), mails
    for person in chaos.people:
        assert digests.get(chaos.db, person["id"], today)["status"] == "sent"
    assert len(subscriptions) == USERS
    assert earliest - datetime.now(UTC) > timedelta(minutes=Settings().renew_margin_minutes)


def test_r5_redis_restarted_empty_loses_nothing(chaos):
    """Redis SIGKILLed mid-run and restarted with nothing on disk: the scheduler notices (epoch marker gone),
    rebuilds the mirror, resyncs everyone, and nothing is lost or sent twice."""
    control, rng = chaos.control, chaos.rng
    calendars = [Calendar(control, person, rng) for person in chaos.people]
    for calendar in calendars:
        calendar.ids = [doc["graph_id"] for doc in chaos.db.events.find({"user_id": calendar.user["id"],
                                                                         "series_master_id": None}).limit(20)]
    changes = 1000 if LONG else 60
    control.clear_deliveries()
    control.set_faults(**BASE_FAULTS, seed=26)
    before = _epoch(chaos.db)
    for done in range(1, changes + 1):
        rng.choice(calendars).step()
        if done == changes // 2:
            chaos.redis.kill()
            chaos.redis.wipe()
            chaos.redis.start()
            emptied = time.monotonic()
    control.clear_faults()
    control.wait_idle(timeout=120)
    record = wait_until(lambda: _recovered_after(chaos.db, before),
                        timeout=60, interval=0.5, message="the loss to be noticed and recovered")
    noticed = time.monotonic() - emptied
    converged = chaos.converge("R5 convergence after an emptied Redis", timeout=600 if LONG else 300)
    mails = _digests_after_another_tick(chaos)
    figures = chaos.figures["r5"] = {
        "changes": changes, "deliveries": dict(outcomes(control)), "reason": record["reason"],
        "noticed_and_recovered_s": round(noticed, 1), "recovery": record["recovery"].get("counts"),
        "converged_s_after_last_change": round(converged, 1), "digests_per_user": sorted(set(mails.values()))}
    print(f"R5: {json.dumps(figures)}")
    assert noticed <= 30
    assert chaos.differences() == {}
    assert mails == Counter({p["mail"]: 1 for p in chaos.people}), mails


def test_r6_mongodb_rolled_back_to_an_earlier_copy_is_recovered_by_one_command(chaos):
    """MongoDB rolled back to a copy of its collections taken earlier in the run (a subscription replaced and
    changes made since), then the operator's two commands: ``calsync init-db`` and ``calsync recover``."""
    control, rng, db = chaos.control, chaos.rng, chaos.db
    calendars = [Calendar(control, person, rng) for person in chaos.people]
    for calendar in calendars:
        calendar.ids = [doc["graph_id"] for doc in db.events.find({"user_id": calendar.user["id"],
                                                                   "series_master_id": None}).limit(20)]
    backup = {name: list(db[name].find()) for name in db.list_collection_names()}
    changes = 1000 if LONG else 60
    for _ in range(changes):
        rng.choice(calendars).step()
    owner = chaos.people[0]["id"]
    replaced = next(s for s in active(control) if s["userId"] == owner)
    control.remove_subscription(replaced["id"])          # Graph drops it; calsync makes a new one, after the backup
    wait_until(lambda: any(
        s["userId"] == owner and s["id"] != replaced["id"] for s in active(control)),
            timeout=120, message="a new subscription after the removed one")
    control.wait_idle(timeout=120)
    chaos.converge("R6 before the rollback", timeout=300)

    names = list(chaos.topology.running)
    chaos.topology.stop()                                   # a restore is done with the service stopped
    for name in db.list_collection_names():
        db[name].drop()
    for name, documents in backup.items():
        if documents:
            db[name].insert_many(documents)
    rolled_back = time.monotonic()
    for name in names:
        chaos.supervisor.start(name.split(".")[0])
    env = chaos.supervisor.envs["web"]
    commands = {}
    for command in (["calsync", "init-db"], ["calsync", "recover"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        commands[command[1]] = done.stdout
    chaos.converge("R6 convergence after the rollback", timeout=600 if LONG else 300)
    converged = time.monotonic() - rolled_back
    mails = _digests_after_another_tick(chaos)
    at_graph = Counter(s["userId"] for s in active(control))
    stored = {doc["user_id"]: doc["_id"] for doc in db.subscriptions.find({"status": "active"})}
    figures = chaos.figures["r6"] = {
        "changes_after_the_copy": changes, "recover": commands["recover"].strip().splitlines()[1:-1],
        "converged_s_after_rollback": round(converged, 1),
        "digests_per_user": sorted(set(mails.values()))}
    print(f"R6: {json.dumps(figures)}")
    assert at_graph == Counter({p["id"]: 1 for p in chaos.people}), at_graph
    assert {s["userId"]: s["id"] for s in active(control)} == stored
    assert chaos.differences() == {}
    assert mails == Counter({p["mail"]: 1 for p in chaos.people}), mails


def _epoch(db) -> str | None:
    """The Redis epoch MongoDB records: it changes only when a loss of Redis data was recovered."""
    return (db.recovery.find_one({"_id": "redis-epoch"}) or {}).get("epoch")


def _recovered_after(db, before: str | None) -> dict | None:
    record = db.recovery.find_one({"_id": "redis-epoch"})
    if record and record.get("epoch") != before and (record.get("recovery") or {}).get("status") == "done":
        return record
    return None


def _digests_after_another_tick(chaos) -> Counter:
    """Mails per user once the digest tick ran again and its jobs finished (a second digest would show)."""
    conn = redis_lib.Redis.from_url(chaos.redis.url)
    after = time.time()
    try:
        wait_until(lambda: float(conn.get("calsync:scheduler:last:digest-tick") or 0) > after,
                   timeout=120, interval=1, message="another digest tick")
        queue = Queue("digest", connection=conn)
        wait_until(lambda: queue.count == 0 and StartedJobRegistry(
            queue=queue).count == 0, timeout=60, message="the digest queue to drain")
    finally:
        conn.close()
    mine = {p["mail"] for p in chaos.people}
    return Counter(to for m in chaos.smtp.messages if (to := parseaddr(m["To"])[1]) in mine)


def _job_failures(chaos) -> int:
    text = "".join(log.read_text(errors="replace") for log in chaos.topology.log_dir.glob("worker.*.log"))
    return sum(text.count(marker) for marker in ("ServerSelectionTimeoutError", "AutoReconnect", "NetworkTimeout"))


def test_r3_no_secret_in_the_databases_the_logs_or_any_response(chaos):
    settings = Settings(ops_token=OPS_TOKEN)
    for person, session in zip(chaos.people, chaos.sessions, strict=True):   # what a user and an operator see
        session.get(f"{chaos.url}/connections/me", timeout=30)
        session.get(f"{chaos.url}/connections/me/data", timeout=60)
        for path in (f"/api/users/{person['id']}", f"/api/users/{person['id']}/meetings",
                     f"/ops/api/users/{person['id']}/calendars", f"/ops/api/users/{person['id']}/export"):
            chaos.ops(path)
    for path in ("/ops/api/health", "/ops/metrics", "/ops/", "/ops/api/subscriptions", "/api/people", "/readyz"):
        chaos.ops(path)

    secrets = _secrets(chaos, settings)
    places = {"mongodb": _mongo_dump(chaos.db), "redis": _redis_dump(chaos.redis.url),
              "logs": "".join(p.read_text(errors="replace") for p in sorted(chaos.topology.log_dir.glob("*.log"))),
              "responses": "\n".join(chaos.responses.texts)}
    found = {f"{kind} in {place}": count for place, text in places.items()
             for kind, values in secrets.items() for count in [sum(v in text for v in values)] if count}
    chaos.figures["r3"] = figures = {"secrets": {k: len(v) for k, v in secrets.items()},
                                     "scanned_bytes": {k: len(v) for k, v in places.items()},
                                     "responses": len(chaos.responses.texts), "found": found}
    print(f"R3: {json.dumps(figures)}")
    assert all(secrets.values()), secrets.keys()
    assert found == {}


def _secrets(chaos, settings: Settings) -> dict[str, set[str]]:
    tokens: dict[str, set[str]] = {"access token": set(), "refresh token": set(), "id token": set()}
    for doc in chaos.db.token_caches.find({}):
        cache = json.loads(crypto.decrypt(settings, doc["blob"]))
        for section, kind in (("AccessToken", "access token"), ("RefreshToken", "refresh token"),
                              ("IdToken", "id token")):
            tokens[kind].update(entry["secret"] for entry in cache.get(section, {}).values())
    states = {s["clientState"] for s in chaos.control.subscriptions() if s.get("clientState")}
    configured = {name: {v for v in (getattr(settings, name) if isinstance(getattr(settings, name), tuple)
                                     else (getattr(settings, name),)) if isinstance(v, str) and len(v) >= 8}
                  for name in SECRET_FIELDS}
    return {**tokens, "clientState": states, **{f"setting {k}": v for k, v in configured.items() if v}}


def _mongo_dump(db) -> str:
    return "\n".join(json_util.dumps(doc) for name in db.list_collection_names() for doc in db[name].find({}))


def _redis_dump(url: str) -> str:
    conn = redis_lib.Redis.from_url(url)
    parts = []
    for key in conn.scan_iter(count=1000):
        kind = conn.type(key).decode()
        values = {"string": lambda k: [conn.get(k)], "hash": lambda k: list(conn.hgetall(k).values()),
                  "list": lambda k: conn.lrange(k, 0, -1), "set": lambda k: list(conn.smembers(k)),
                  "zset": lambda k: conn.zrange(k, 0, -1)}.get(kind, lambda k: [])(key)
        for value in values:
            if value is None:
                continue
            try:
                value = zlib.decompress(value)   # RQ job payloads are compressed pickles
            except zlib.error:
                pass
            parts.append(key.decode(errors="replace") + " " + value.decode("latin-1"))
    conn.close()
    return "\n".join(parts)
