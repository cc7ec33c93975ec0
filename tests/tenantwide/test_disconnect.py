"""Disconnecting a whole tenant: enrolment stops at once, then jobs delete every subscription at Graph and purge
every person's data, the directory last; lost jobs are queued again by the hourly sweep; an admin who connects
again meanwhile stops the purge."""

from __future__ import annotations

from rq import Queue

from service import queues
from service.store import tenantwide
from service.tenantwide.enrolment import PEOPLE_PER_JOB, sweep
from tests.support.connect import emulated_user
from tests.support.tenant_admin import (
    GLOBAL_ADMIN,
    active_subscriptions,
    connect_tenant,
    csrf_token,
    meeting_soon,
    new_tenant,
)

JSON = {"Accept": "application/json"}


def _org(stack, people: int) -> tuple[str, dict, list[dict]]:
    """A tenant enrolled tenant-wide: its admin and ``people`` more, each with a meeting synced."""
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    members = [emulated_user(stack, mail=f"p{n:02d}@contoso.com", tenant_id=tenant) for n in range(people)]
    for person in [admin, *members]:
        stack.emulator.control.create_event(person["id"], meeting_soon())
    return tenant, admin, members


def _held(stack, tenant: str, ids: list[str]) -> dict[str, int]:
    db = stack.runtime.db
    return {"users": db.users.count_documents({"tenant_id": tenant}),
            "events": db.events.count_documents({"user_id": {"$in": ids}}),
            "directory": db.directory.count_documents({"tenant_id": tenant}),
            "subscriptions": sum(len(active_subscriptions(stack, i)) for i in ids)}


def test_the_admin_disconnects_the_organisation_and_jobs_delete_every_subscription_and_purge_everyone(stack):
    tenant, admin, members = _org(stack, PEOPLE_PER_JOB + 5)       # more than one purge job
    ids = [admin["id"], *(m["id"] for m in members)]
    session = connect_tenant(stack, admin["id"])
    stack.run_jobs()
    assert _held(stack, tenant, ids) == {"users": 26, "events": 26, "directory": 26, "subscriptions": 26}

    answer = session.post(f"{stack.url}/admin/tenant/disconnect", data={"csrf_token": csrf_token(stack, session)},
                          timeout=30)
    page = session.get(f"{stack.url}/admin/tenant", timeout=10)
    during = session.get(f"{stack.url}/admin/tenant", headers=JSON, timeout=10).json()
    jobs = Queue(queues.MAINTENANCE, connection=stack.runtime.redis).count
    stack.run_jobs()
    after = session.get(f"{stack.url}/admin/tenant", headers=JSON, timeout=10).json()

    assert answer.status_code == 202 and "The subscriptions of 26 people are being deleted" in answer.text
    assert 'id="disconnecting"' in page.text and "26 people still to purge" in page.text
    assert during["settings"]["mode"] == "per_user"
    assert during["disconnecting"]["left"] == 26 and during["disconnecting"]["since"].endswith("Z")
    assert jobs == 2                        # 26 people, PEOPLE_PER_JOB to a job
    assert _held(stack, tenant, ids) == {"users": 0, "events": 0, "directory": 0, "subscriptions": 0}
    assert after["disconnecting"] is None and after["counts"]["total"] == 0
    assert tenantwide.tenants_disconnecting(stack.runtime.db) == []


def test_purge_jobs_lost_with_redis_are_queued_again_by_the_hourly_sweep(stack, ops_headers):
    tenant, admin, members = _org(stack, 3)
    ids = [admin["id"], *(m["id"] for m in members)]
    connect_tenant(stack, admin["id"])
    stack.run_jobs()

    answer = stack.client.delete(f"/api/tenants/{tenant}/connection", headers=ops_headers)
    Queue(queues.MAINTENANCE, connection=stack.runtime.redis).empty()      # the purge jobs are lost
    stack.run_jobs()
    lost = _held(stack, tenant, ids)
    swept = sweep(stack.runtime.db, stack.runtime.redis)
    stack.run_jobs()

    assert answer.status_code == 202 and answer.get_json() == {"tenant_id": tenant, "purging": 4}
    assert lost["users"] == 4 and lost["subscriptions"] == 4     # nothing ran, and nothing was re-enrolled
    assert swept == 1
    assert _held(stack, tenant, ids) == {"users": 0, "events": 0, "directory": 0, "subscriptions": 0}
    connection = stack.client.get(f"/api/tenants/{tenant}/connection", headers=ops_headers).get_json()
    assert connection["disconnecting"] is None


def test_an_admin_who_connects_again_before_the_purge_ran_keeps_the_people(stack, ops_headers):
    tenant, admin, members = _org(stack, 2)
    ids = [admin["id"], *(m["id"] for m in members)]
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    before = {i: [s["id"] for s in active_subscriptions(stack, i)] for i in ids}

    stack.client.delete(f"/api/tenants/{tenant}/connection", headers=ops_headers)
    again = stack.client.put(f"/api/tenants/{tenant}/connection", json={"mode": "tenant_wide"}, headers=ops_headers)
    stack.run_jobs()

    assert again.status_code == 200
    assert _held(stack, tenant, ids) == {"users": 3, "events": 3, "directory": 3, "subscriptions": 3}
    assert {i: [s["id"] for s in active_subscriptions(stack, i)] for i in ids} == before   # never purged
    assert tenantwide.tenants_disconnecting(stack.runtime.db) == []
