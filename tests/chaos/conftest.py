"""One Procfile topology for the chaos suites, booted once per module on the wire server, a redis-server of
its own (persistent, so it can crash and come back with its data) and the emulator; the workers reach
MongoDB through a proxy the suites can cut.

``CALSYNC_CHAOS=long`` runs the issue's full sizes (50 users, 5,000 changes, a worker SIGKILLed every
30 s); the default is a short profile that keeps the same faults at a size this machine runs in minutes.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlparse

import pymongo
import pytest
import redis
import requests
from rq import Worker

from emulator.testing import running_emulator
from harness.loopback import free_port
from harness.topology import Topology
from harness.waiting import wait_until
from service.cli import demo
from service.config import Settings
from service.sync import rounds
from tests.support.chaos import USERS, RedisServer, Supervisor, TcpProxy
from tests.support.clock import digest_due_today, midday_zone
from tests.support.connect import emulated_user
from tests.support.serving import OPS_TOKEN
from tests.support.topology import active, differences, environment, ready


@dataclass
class Responses:
    """Every response calsync gave the suite's own HTTP clients (R3 scans them for secrets)."""

    texts: list[str] = field(default_factory=list)

    def hook(self, response, *args, **kwargs):
        if response.url.startswith(self.base):
            self.texts.append(f"{response.status_code} {dict(response.headers)}\n{response.text}")
        return response

    base: str = ""


@dataclass
class Chaos:
    url: str
    emulator: object
    db: object
    redis: RedisServer
    proxy: TcpProxy
    topology: Topology
    supervisor: Supervisor
    people: list[dict]
    sessions: list[requests.Session]
    responses: Responses
    window: tuple
    rng: random.Random
    smtp: object
    zone: str = field(default_factory=midday_zone)   # every user's: "today" there outlasts the module
    figures: dict = field(default_factory=dict)

    @property
    def control(self):
        return self.emulator.control

    def http(self) -> requests.Session:
        session = demo.browser_session()
        session.hooks["response"].append(self.responses.hook)
        return session

    def ops(self, path: str, method: str = "GET", **kwargs) -> requests.Response:
        with self.http() as session:
            return session.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {OPS_TOKEN}"},
                                   timeout=30, **kwargs)

    def differences(self) -> dict[str, list[str]]:
        found = {}
        for person in self.people:
            problems = differences(self.db, self.control, person["id"], self.window)
            if problems:
                found[person["mail"]] = problems
        return found

    def converge(self, what: str, timeout: float) -> float:
        """Wait until MongoDB equals the emulator's truth for every user (restarting what died); seconds taken."""
        started = time.monotonic()

        def settled():
            self.supervisor.revive()
            return not self.differences()

        try:
            wait_until(settled, timeout=timeout, interval=2, message=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.differences()}\n{self.redis_state()}\n{self.topology.tail()}") from None
        return time.monotonic() - started

    def redis_state(self) -> str:
        """The Redis keys of each user that has not converged, and the queues, for the failure message."""
        conn = redis.Redis.from_url(self.redis.url)
        lines = []
        for person in self.people:
            keys = sorted(k.decode() for k in conn.scan_iter(match=f"calsync:*{person['id']}*"))
            lines.append(f"{person['mail']} {person['id']}: " + ", ".join(f"{k}(ttl {conn.ttl(k)})" for k in keys))
            guard = conn.get(f"calsync:sync-pending:{person['id']}")
            if guard is not None:
                status = conn.hget(b"rq:job:" + guard, "status")
                lines.append(f"  pending guard {guard!r}: its job's status {status!r}")
        stream = "calsync:sync-requests"
        waiting = conn.xpending(stream, "dispatchers")["pending"] if conn.exists(stream) else 0
        lines.append(f"sync-request stream: {conn.xlen(stream)} entries, {waiting} read and not acknowledged")
        for worker in Worker.all(connection=conn):
            lines.append(f"worker {worker.name} pid {worker.pid} {worker.get_state()} job {worker.get_current_job_id()}"
                         f" heartbeat {worker.last_heartbeat}")
        lines.append("scheduler locks: " + ", ".join(f"{k.decode()}={conn.get(k)!r}(ttl {conn.ttl(k)})"
                                                     for k in conn.scan_iter(match="rq:scheduler-lock:*")))
        for queue in ("sync", "subscriptions"):
            lines.append(f"queue {queue}: {conn.llen(f'rq:queue:{queue}')} queued, "
                         f"{conn.zcard(f'rq:wip:{queue}') or conn.zcard(f'rq:started:{queue}')} started, "
                         f"{conn.zcard(f'rq:scheduled:{queue}')} scheduled, {conn.zcard(f'rq:failed:{queue}')} failed")
        conn.close()
        return "\n".join(lines)


def _connect(chaos: Chaos, person: dict) -> requests.Session:
    session = chaos.http()
    authorize = demo.start_connect(chaos.url, session, chaos.zone)
    callback = session.get(demo.sign_in_at_emulator(chaos.control, authorize, person["id"]), timeout=30)
    assert callback.status_code == 200 and "Your calendar is connected" in callback.text, callback.status_code
    return session


@pytest.fixture(scope="module")
def chaos(tmp_path_factory, mongo_server, _smtp_server):
    if mongo_server is None:
        pytest.skip("the chaos suites run the Procfile's processes on a wire server")
    tmp = tmp_path_factory.mktemp("chaos")
    (tmp / "logs").mkdir()
    name = f"calsync_chaos_{os.getpid()}"
    uri = mongo_server.database_uri(name)
    upstream = urlparse(mongo_server.uri)
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(running_emulator(tmp / "emulator"))
        redis_server = RedisServer(tmp / "redis")
        stack.callback(redis_server.stop)
        proxy = TcpProxy((upstream.hostname, upstream.port))
        stack.callback(proxy.close)
        client = pymongo.MongoClient(uri, tz_aware=True)
        stack.callback(lambda: (client.drop_database(name), client.close()))
        port = free_port()
        env = environment(tmp, emulator, uri, redis_server.url, _smtp_server, port, OPS_TOKEN)
        worker_env = {**env, "MONGODB_URI": f"mongodb://127.0.0.1:{proxy.port}/{name}"}
        topology = Topology(env, tmp / "logs")
        supervisor = Supervisor(topology, {"web": env, "scheduler": env, "worker": worker_env})
        stack.callback(lambda: topology.stop())
        released = topology.release()
        assert released.returncode == 0, released.stderr[-2000:]
        for kind in ("web", "worker", "worker", "scheduler"):
            supervisor.start(kind)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: ready(url), timeout=60, interval=0.5, message="gunicorn")
        responses = Responses(base=url)
        chaos = Chaos(url, emulator, client.get_default_database(), redis_server, proxy, topology, supervisor,
                      [], [], responses, rounds.window_for(Settings(), datetime.now(UTC)), random.Random(16),
                      _smtp_server)
        booted = time.monotonic()
        stub = type("Stack", (), {"emulator": emulator, "url": url})
        for n in range(USERS):
            person = emulated_user(stub, mail=f"chaos{n}@contoso.com")
            chaos.sessions.append(_connect(chaos, person))
            digest_due_today(chaos.db, person["id"])   # whatever the weekday or hour: R4 counts them
            chaos.people.append(person)
        wait_until(lambda: len(active(chaos.control)) == USERS, timeout=120, interval=0.5, message="every subscription")
        chaos.converge("the backfill", timeout=180)
        chaos.figures["connect_and_backfill_s"] = round(time.monotonic() - booted, 1)
        yield chaos
        for session in chaos.sessions:
            session.close()
