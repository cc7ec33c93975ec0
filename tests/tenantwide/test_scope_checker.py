"""The scope checker under Exchange Online's RBAC for Applications: mailboxes in the scope are synced, others are
reported out of scope and left alone; after the admin changes the scope and says so, they are probed again; and a
tenant-wide Entra grant of Calendars.Read adds to RBAC and defeats the scoping (the README's warning)."""

from __future__ import annotations

from datetime import UTC, datetime

from rq import Queue
from rq.job import Job

from service import queues
from tests.support.connect import emulated_user
from tests.support.tenant_admin import GLOBAL_ADMIN, active_subscriptions, connect_tenant, csrf_token, new_tenant


def _scoped_org(stack):
    control = stack.emulator.control
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    sales = emulated_user(stack, mail="sales@contoso.com", tenant_id=tenant)
    ceo = emulated_user(stack, mail="ceo@contoso.com", tenant_id=tenant)
    control.request("PUT", "/scopes", {"tenant_id": tenant, "kind": "rbac", "user_ids": [admin["id"], sales["id"]]})
    return tenant, admin, sales, ceo


def _scope(stack, user: dict) -> str | None:
    return (stack.runtime.db.users.find_one({"_id": user["id"]}) or {}).get("scope", {}).get("state")


def test_an_rbac_scope_limits_the_mailboxes_and_a_policy_change_is_probed_again(stack):
    control = stack.emulator.control
    tenant, admin, sales, ceo = _scoped_org(stack)
    session = connect_tenant(stack, admin["id"])
    # The admin removes the tenant-wide Entra grant of Calendars.Read, as the README says: RBAC alone decides.
    control.request("POST", "/identity/consents/revoke", {"tenant": tenant, "client_id": stack.settings.client_id,
                                                          "roles": ["Calendars.Read"]})
    stack.runtime.app_tokens.forget(tenant)
    stack.run_jobs()

    assert (_scope(stack, sales), _scope(stack, ceo)) == ("in_scope", "out_of_scope")
    assert len(active_subscriptions(stack, sales["id"])) == 1 and active_subscriptions(stack, ceo["id"]) == []
    test = control.request("GET", "/scopes/test", params={"tenant_id": tenant, "resource": ceo["mail"]})
    assert test["InScope"] is False and test["EntraGrant"] is False
    # Left alone: nothing queued, nothing failed, for the out-of-scope mailbox.
    assert all(Queue(n, connection=stack.runtime.redis).count == 0 for n in queues.ALL)

    control.request("PUT", "/scopes", {"tenant_id": tenant, "kind": "rbac",
                                       "user_ids": [admin["id"], sales["id"], ceo["id"]]})
    answer = session.post(f"{stack.url}/admin/tenant/policy-changed", data={"csrf_token": csrf_token(stack, session)},
                          allow_redirects=False, timeout=10)
    stack.run_jobs()

    assert answer.status_code == 303 and _scope(stack, ceo) == "in_scope"
    assert len(active_subscriptions(stack, ceo["id"])) == 1
    later = Queue(queues.MAINTENANCE, connection=stack.runtime.redis).scheduled_job_registry
    assert [Job.fetch(i, connection=stack.runtime.redis).func_name for i in later.get_job_ids()] == [
        queues.TENANT_RECHECK]  # the tenant's mailboxes are probed once more after Exchange's hour


def _run_scheduled_now(stack, queue_name: str) -> None:
    """Run the jobs scheduled on a queue as if their time had come."""
    queue = Queue(queue_name, connection=stack.runtime.redis)
    for job_id in queue.scheduled_job_registry.get_job_ids():
        queue.scheduled_job_registry.schedule(Job.fetch(job_id, connection=stack.runtime.redis), datetime.now(UTC))
    stack.run_jobs()


def test_a_mailbox_exchange_puts_in_scope_only_within_its_hour_is_synced_by_the_later_probe(stack, ops_headers):
    """Exchange may take an hour to apply a scope change: the probe right after the admin's word still meets
    ErrorAccessDenied, and the probe an hour later must look at that mailbox again, not skip it as unreadable."""
    control = stack.emulator.control
    tenant, admin, sales, ceo = _scoped_org(stack)
    connect_tenant(stack, admin["id"])
    control.request("POST", "/identity/consents/revoke", {"tenant": tenant, "client_id": stack.settings.client_id,
                                                          "roles": ["Calendars.Read"]})
    stack.runtime.app_tokens.forget(tenant)
    stack.run_jobs()
    assert _scope(stack, ceo) == "out_of_scope"

    answer = stack.client.post(f"/api/tenants/{tenant}/connection/recheck", headers=ops_headers)
    stack.run_jobs()       # Exchange has not applied anything yet
    assert answer.status_code == 200 and answer.get_json()["rechecking"] == 3
    assert _scope(stack, ceo) == "out_of_scope" and active_subscriptions(stack, ceo["id"]) == []

    control.request("PUT", "/scopes", {"tenant_id": tenant, "kind": "rbac",     # ... and now it has
                                       "user_ids": [admin["id"], sales["id"], ceo["id"]]})
    _run_scheduled_now(stack, queues.MAINTENANCE)

    assert _scope(stack, ceo) == "in_scope" and len(active_subscriptions(stack, ceo["id"])) == 1
    assert stack.runtime.db.users.find_one({"_id": ceo["id"]})["connection"]["status"] == "connected"


def test_a_tenant_wide_entra_grant_defeats_the_rbac_scope(stack):
    tenant, admin, sales, ceo = _scoped_org(stack)
    connect_tenant(stack, admin["id"])         # .default grants Calendars.Read tenant-wide in Entra
    stack.run_jobs()

    assert _scope(stack, ceo) == "in_scope" and len(active_subscriptions(stack, ceo["id"])) == 1
    test = stack.emulator.control.request("GET", "/scopes/test", params={"tenant_id": tenant, "resource": ceo["mail"]})
    assert test == {"Resource": "ceo@contoso.com", "InScope": True, "EntraGrant": True}
