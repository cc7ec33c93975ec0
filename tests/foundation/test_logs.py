"""Structured logs: a request's line carries its request id (accepted or made, and sent back), a job's line
(in a real rq work horse) its job, user and subscription ids, and secrets never reach a line, in JSON or
text."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import logs, queues
from service.app import create_app
from service.config import ConfigError, Settings
from service.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
SECRET = "client-secret-that-must-not-leak-0123"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLXBhcnQ"


def job_that_logs(user_id: str, subscription_id: str | None = None) -> str:
    """Run by the rq worker below: a line with the ids bound by the worker, and secrets it must not show."""
    logging.getLogger("calsync.test").warning("working for %s with %s and Bearer %s", user_id, SECRET, JWT)
    return "done"


@pytest.fixture
def captured(make_settings):
    """The root logger, configured as a process would be, writing into a buffer; its JSON lines."""
    settings = make_settings(log_format="json", client_secret=SECRET)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure(settings)
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)
    yield settings, lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_a_request_line_carries_the_request_id_it_was_given_and_sends_it_back(captured, db, redis_conn):
    settings, lines = captured
    client = create_app(runtime=Runtime(settings, db=db, redis_conn=redis_conn)).test_client()

    given = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a.91"})
    made = client.get("/healthz?t=signed-link-token", headers={"X-Request-Id": "not ok; " + "x" * 200})

    [first, second] = [line for line in lines() if line["logger"] == "calsync.http"]
    assert given.headers["X-Request-Id"] == "lb-7f3a.91" and first["request_id"] == "lb-7f3a.91"
    assert first["status"] == 200 and first["path"] == "/healthz" and first["level"] == "INFO"
    assert len(made.headers["X-Request-Id"]) == 32 and second["request_id"] == made.headers["X-Request-Id"]
    assert "signed-link-token" not in json.dumps(second)    # paths only: query strings carry signed links


def test_a_secret_in_a_message_or_an_exception_is_redacted_in_json(captured):
    _, lines = captured
    log = logging.getLogger("calsync.test")

    log.warning("token endpoint said %s", SECRET)
    try:
        raise ValueError(f"refused Authorization: Bearer {JWT}")
    except ValueError:
        log.exception("call failed")

    text = json.dumps(lines())
    assert SECRET not in text and JWT not in text
    assert [line["message"] for line in lines()] == ["token endpoint said [redacted]", "call failed"]
    assert "Bearer [redacted]" in lines()[1]["exc_info"]


def test_text_lines_name_the_bound_ids_too(make_settings):
    formatter = logs.formatter(make_settings(log_format="text"))
    record = logging.LogRecord("calsync.test", logging.INFO, __file__, 1, "synced", None, None)
    with logs.bound(job_id="j-1", user_id="u-1"):
        logs.ContextFields().filter(record)

    assert formatter.format(record).endswith("calsync.test: synced [job_id=j-1 user_id=u-1]")


def test_log_format_and_level_come_from_the_environment():
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"CALSYNC_LOG_FORMAT": "json", "CALSYNC_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="CALSYNC_LOG_FORMAT: must be one of text, json"):
        Settings.from_env({"CALSYNC_LOG_FORMAT": "xml"})


def test_a_job_line_from_a_work_horse_carries_job_user_and_subscription_ids(redis_url, redis_conn, tmp_path):
    job = queues.get_queue(queues.MAINTENANCE, redis_conn).enqueue(job_that_logs, "user-42", subscription_id="sub-7")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_") and k != "MONGODB_URI"}
    env.update(PYTHONPATH=str(ROOT), CALSYNC_LOG_FORMAT="json", CALSYNC_CLIENT_SECRET=SECRET,
               CALSYNC_DATA_DIR=str(tmp_path / "var"), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")

    worker = subprocess.run(["rq", "worker", "-w", "service.workers.worker.Worker", "--url", redis_url, "--burst",
                             queues.MAINTENANCE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    output = worker.stdout + worker.stderr
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    [mine] = [line for line in lines if line["logger"] == "calsync.test"]
    assert worker.returncode == 0, output
    assert (mine["job_id"], mine["user_id"], mine["subscription_id"], mine["queue"]) == (
        job.id, "user-42", "sub-7", "maintenance")
    assert mine["message"] == "working for user-42 with [redacted] and Bearer [redacted]"
    assert SECRET not in output and JWT not in output
    assert all(line.startswith("{") for line in output.splitlines() if line.strip()), output  # rq's lines too
    assert "user-42" not in " ".join(line["message"] for line in lines if line["logger"] == "rq.worker")
