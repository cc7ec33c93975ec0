"""Operations stay truthful when a dependency is down: health JSON, metrics and the /ops page answer and
name the failed dependency (a real redis-server stopped mid-test; a MongoDB address nothing listens on)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from harness.loopback import free_port
from harness.waiting import wait_until
from service import queues
from service.app import create_app
from service.runtime import Runtime


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, on a free port, that the test may stop."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (scripts/install-test-deps.sh installs it)"
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                                "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        assert process.poll() is None, "redis-server exited"
        try:
            return redis.Redis.from_url(url).ping()
        except redis.ConnectionError:
            return False

    wait_until(answers, timeout=10, message="redis-server to start")
    yield process, url
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def client_for(runtime: Runtime):
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    return app.test_client()


def test_with_redis_stopped_health_metrics_and_the_page_name_redis(make_settings, db, own_redis, ops_headers):
    process, url = own_redis
    runtime = Runtime(make_settings(redis_url=url), db=db)
    client = client_for(runtime)
    assert client.get("/ops/api/health", headers=ops_headers).status_code == 200

    process.terminate()
    process.wait(timeout=10)
    health = client.get("/ops/api/health", headers=ops_headers)
    exposition = client.get("/ops/metrics", headers=ops_headers)
    scraped = samples(client.get("/metrics", headers=ops_headers).get_data(as_text=True))
    page = client.get("/ops/", headers={**ops_headers, "Accept": "text/html"})
    runtime.close()

    assert health.status_code == 503 and health.headers["Retry-After"]
    body = health.get_json()
    assert body["failed"] == ["redis"] and body["dependencies"] == {"mongodb": "ok", "redis": "unreachable"}
    assert body["status"] == "degraded" and body["queues"] == [] and body["workers"] is None
    assert body["counts"]["users_total"] == 0     # what MongoDB can tell is still there
    assert exposition.status_code == 200
    assert scraped[("calsync_dependency_up", (("dependency", "redis"),))] == 0
    assert scraped[("calsync_dependency_up", (("dependency", "mongodb"),))] == 1
    assert ("calsync_users", (("status", "connected"),)) in scraped
    assert not [name for name, _ in scraped if name == "calsync_queue_jobs"]
    assert page.status_code == 200
    assert "Redis is unreachable" in page.get_data(as_text=True)


def test_with_mongodb_unreachable_health_metrics_and_the_page_name_mongodb(make_settings, redis_conn, ops_headers):
    runtime = Runtime(make_settings(mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/calsync"),
                      redis_conn=redis_conn)
    client = client_for(runtime)

    health = client.get("/ops/api/health", headers=ops_headers)
    scraped = samples(client.get("/metrics", headers=ops_headers).get_data(as_text=True))
    page = client.get("/ops/", headers={**ops_headers, "Accept": "text/html"})
    runtime.close()

    assert health.status_code == 503
    body = health.get_json()
    assert body["failed"] == ["mongodb"] and body["counts"] is None and body["subscriptions"] is None
    assert [q["queue"] for q in body["queues"]] == list(queues.ALL)   # Redis still answers for every queue
    assert scraped[("calsync_dependency_up", (("dependency", "mongodb"),))] == 0
    assert ("calsync_queue_jobs", (("queue", "sync"), ("state", "queued"))) in scraped
    assert page.status_code == 200
    assert "MongoDB is unreachable" in page.get_data(as_text=True)
