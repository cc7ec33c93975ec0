"""The scheduler's periodic tasks and leadership, and the ``calsync sync`` command."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from service import cli as cli_module
from service import queues
from service.cli import sync as workers_cli
from service.workers.scheduler import PERIODIC, Scheduler
from tests.support.mailboxes import soon


@pytest.fixture
def rt(graph_rt):
    return graph_rt


def test_the_scheduler_runs_every_sweep_as_real_jobs(rt, redis_conn, run_jobs):
    enqueued = Scheduler(redis_conn, identity="x").tick()
    jobs = [job for name in queues.ALL for job in queues.get_queue(name, redis_conn).jobs]

    run_jobs()

    assert sorted(enqueued) == ["calendar-poll", "digest-tick", "outbox-sweep", "prep-tick", "reconcile-sweep",
                                "renewal-sweep", "retention", "tenant-directory", "weeks-sweep", "window-roll",
                                "working-hours-sweep"]
    assert sorted(job.func_name for job in jobs) == sorted(task.func for task in PERIODIC)
    assert [job.get_status(refresh=True) for job in jobs] == ["finished"] * len(PERIODIC)


def test_only_one_of_two_schedulers_enqueues(redis_conn):
    first, second = Scheduler(redis_conn, identity="a"), Scheduler(redis_conn, identity="b")

    enqueued = first.tick(now=1_000_000.0) + second.tick(now=1_000_000.0)
    again = first.tick(now=1_000_001.0) + second.tick(now=1_000_001.0)

    assert sorted(enqueued) == sorted(t.name for t in PERIODIC) and again == []
    maintenance = sum(t.queue == queues.MAINTENANCE for t in PERIODIC)
    assert queues.get_queue(queues.MAINTENANCE, redis_conn).count == maintenance


def test_a_new_leader_does_not_rerun_what_the_old_one_just_did(redis_conn):
    first, second = Scheduler(redis_conn, identity="a"), Scheduler(redis_conn, identity="b")
    first.tick(now=2_000_000.0)
    first.resign()

    assert second.tick(now=2_000_030.0) == []
    assert "digest-tick" in second.tick(now=2_000_061.0)


def test_each_task_runs_at_the_start_of_each_period_of_the_clock_not_a_period_after_its_last_run(redis_conn):
    scheduler = Scheduler(redis_conn, identity="a")
    minute = 2_000_160.0                                   # a whole minute, and so is minute + 60, not 5
    scheduler.tick(now=minute - 5)                         # everything, once, 5 s before it

    assert scheduler.tick(now=minute + 1) == ["digest-tick", "prep-tick", "outbox-sweep"]   # the new minute's
    assert scheduler.tick(now=minute + 59) == []
    assert sorted(scheduler.tick(now=minute + 60)) == ["digest-tick", "outbox-sweep", "prep-tick"]


def test_the_reconcile_job_enqueued_by_the_scheduler_runs(rt, mailbox, mailboxes, run_jobs, redis_conn):
    user_id = mailbox("tom")
    mailboxes.create(user_id, soon(1))
    tasks = tuple(t for t in PERIODIC if t.name == "reconcile-sweep")

    Scheduler(redis_conn, tasks=tasks, identity="x").tick()
    run_jobs()

    assert mailboxes.differences(rt.db, rt.settings, user_id) == []


def test_calsync_sync_command_syncs_a_user_by_email(rt, mailbox, mailboxes, monkeypatch):
    user_id = mailbox("uma", "Uma@Contoso.example")
    mailboxes.create(user_id, soon(1))
    monkeypatch.setattr(workers_cli, "runtime_from_env", lambda: rt)

    result = CliRunner().invoke(cli_module.cli, ["sync", "uma@contoso.example"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: last_result=full:initial")
    assert mailboxes.differences(rt.db, rt.settings, user_id) == []
    assert CliRunner().invoke(cli_module.cli, ["sync", "nobody@x"]).exit_code == 1
