"""A tenant enrolled end to end over the Procfile topology: release, gunicorn, an rq worker and the scheduler as
separate processes on the MongoDB wire server, real Redis and the emulator. The admin signs in and consents
through the real pages; the worker reads the directory (users/delta), probes each mailbox, creates one
subscription per mailbox with the app token and backfills; a change then arrives as a notification, a
password change leaves the app-token subscriptions alone; the admin disconnects the organisation and the worker
deletes every subscription and purges everyone; and stopping leaves no process."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.waiting import wait_until
from service.config import Settings
from service.sync import rounds
from tests.support.connect import emulated_user
from tests.support.tenant_admin import GLOBAL_ADMIN, connect_tenant, csrf_token, meeting_soon
from tests.support.topology import active, differences, procfile_topology, ready

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.wire
def test_a_tenant_enrolled_end_to_end_over_the_procfile_topology(tmp_path, emulator, mongodb_uri, redis_url,
                                                                  redis_conn, smtp_inbox, db):
    topology, stack = procfile_topology(tmp_path, emulator, mongodb_uri, redis_url, smtp_inbox)
    url, control = stack.url, emulator.control
    try:
        released = topology.release()
        assert released.returncode == 0, released.stderr[-2000:]
        for kind, index in (("web", 1), ("worker", 1), ("scheduler", 1)):
            topology.start(kind, index)
        wait_until(lambda: ready(url), timeout=60, message="gunicorn")

        tenant = control.create_tenant(display_name="Contoso")["id"]
        admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
        people = [emulated_user(stack, mail=f"person{n}@contoso.com", tenant_id=tenant) for n in range(4)]
        emulated_user(stack, mail="guest@fabrikam.com", tenant_id=tenant, user_type="Guest")
        for person in people:
            control.create_event(person["id"], meeting_soon())
        session = connect_tenant(stack, admin["id"])

        everyone = {p["id"] for p in [admin, *people]}
        wait_until(lambda: {s["userId"] for s in active(control) if s["creatorId"] != s["userId"]} == everyone,
                   timeout=120, interval=1, message="one app-token subscription per mailbox")
        window = rounds.window_for(Settings(), datetime.now(UTC))
        for person in people:
            wait_until(lambda p=person: not differences(db, control, p["id"], window),
                       timeout=90, interval=1, message=f"backfill of {person['mail']}")
        assert len(active(control)) == len(everyone)       # the guest has none, nobody has two

        control.request("POST", f"/users/{people[0]['id']}/password", {})
        control.create_event(people[0]["id"], meeting_soon(3))
        wait_until(lambda: not differences(db, control, people[0]["id"], window),
                   timeout=90, interval=1, message="the change, notified and stored")
        assert len(active(control)) == len(everyone)

        disconnect = session.post(f"{url}/admin/tenant/disconnect", data={"csrf_token": csrf_token(stack, session)},
                                  timeout=30)
        assert disconnect.status_code == 202, disconnect.text[-500:]
        wait_until(lambda: active(control) == [] and db.users.count_documents({"tenant_id": tenant}) == 0
                   and db.directory.count_documents({"tenant_id": tenant}) == 0, timeout=90, interval=1,
                   message="every subscription deleted and everyone purged")
        assert db.events.count_documents({"user_id": {"$in": list(everyone)}}) == 0
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{topology.tail()}") from None
    finally:
        leftovers = topology.stop()
    assert leftovers == [], leftovers
