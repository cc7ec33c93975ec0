"""A whole organisation connected at once, end to end through the emulator: admin sign-in and consent, the
directory from users/delta, who is enrolled, the scope checker's classes, one subscription per mailbox made
with the app token, and what a password change does to user-token and app-token subscriptions."""

from __future__ import annotations

from rq import Queue

from service import queues
from service.store import tenantwide
from service.store import users as user_store
from tests.support.connect import connect_user, emulated_user
from tests.support.tenant_admin import GLOBAL_ADMIN, active_subscriptions, connect_tenant, meeting_soon, new_tenant


def test_an_admin_connects_the_whole_organisation(stack):
    control = stack.emulator.control
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    alice = emulated_user(stack, mail="alice@contoso.com", tenant_id=tenant)
    bob = emulated_user(stack, mail="bob@contoso.com", tenant_id=tenant)
    guest = emulated_user(stack, mail="guest@fabrikam.com", tenant_id=tenant, user_type="Guest")
    disabled = emulated_user(stack, mail="gone@contoso.com", tenant_id=tenant, account_enabled=False)
    unlicensed = emulated_user(stack, mail="kiosk@contoso.com", tenant_id=tenant, licensed=False)
    scoped_out = emulated_user(stack, mail="ceo@contoso.com", tenant_id=tenant)
    control.request("PUT", "/scopes", {"tenant_id": tenant, "user_ids": [
        u["id"] for u in (admin, alice, bob, unlicensed)]})
    control.create_event(alice["id"], meeting_soon())
    connect_user(stack, bob["id"])            # bob connected himself before: covered both ways afterwards
    stack.run_jobs()
    assert len(active_subscriptions(stack, bob["id"])) == 1

    connect_tenant(stack, admin["id"])
    stack.run_jobs()

    db = stack.runtime.db
    alice_doc = user_store.get(db, alice["id"])
    assert alice_doc.tenant_wide and alice_doc.connected and alice_doc.entra_id == alice["id"]
    assert user_store.get(db, guest["id"]) is None and user_store.get(db, disabled["id"]) is None
    assert db.events.count_documents({"user_id": alice["id"]}) == 1
    scope = {u["mail"]: (db.users.find_one({"_id": u["id"]}) or {}).get("scope", {}).get("state")
             for u in (alice, bob, unlicensed, scoped_out)}
    assert scope == {"alice@contoso.com": "in_scope", "bob@contoso.com": "in_scope",
                     "kiosk@contoso.com": "no_mailbox", "ceo@contoso.com": "out_of_scope"}
    # One subscription per mailbox in scope, each made with the app token; bob's own one was replaced.
    for person in (alice, bob):
        subs = active_subscriptions(stack, person["id"])
        assert len(subs) == 1 and subs[0]["creatorId"] != person["id"], person["mail"]
    assert active_subscriptions(stack, scoped_out["id"]) == []
    assert user_store.get(db, scoped_out["id"]).connection.status == "cannot_sync"
    counts = tenantwide.counts(db, tenant)
    assert counts["tenant_wide"] == 3 and counts["cannot_sync"] == 2   # admin, alice, bob; kiosk, ceo


def test_a_password_change_removes_user_token_subscriptions_but_not_app_token_ones(stack):
    control = stack.emulator.control
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    alice = emulated_user(stack, mail="alice@contoso.com", tenant_id=tenant)
    other = new_tenant(stack, "Fabrikam")
    erin = emulated_user(stack, mail="erin@fabrikam.com", tenant_id=other)
    connect_user(stack, erin["id"])
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    assert len(active_subscriptions(stack, alice["id"])) == 1 and len(active_subscriptions(stack, erin["id"])) == 1

    removed = [control.request("POST", f"/users/{u['id']}/password", {})["removed_subscriptions"]
               for u in (alice, erin)]

    assert removed[0] == [] and len(removed[1]) == 1
    assert len(active_subscriptions(stack, alice["id"])) == 1
    assert active_subscriptions(stack, erin["id"]) == []


def test_a_mailbox_is_probed_subscribed_and_first_synced_in_one_job(stack):
    """Enrolment runs the first sync itself (one job per mailbox, not two): its events are stored when the job
    returns, and no sync job is left queued for it."""
    control = stack.emulator.control
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    alice = emulated_user(stack, mail="alice@contoso.com", tenant_id=tenant)
    control.create_event(alice["id"], meeting_soon())
    connect_tenant(stack, admin["id"])
    stack.runtime.tenant_wide.sync_directory(tenant)   # enrolment jobs queued, not run
    db = stack.runtime.db

    assert stack.runtime.tenant_wide.enrol_mailbox(alice["id"]) == "subscribed:new"

    assert db.events.count_documents({"user_id": alice["id"]}) == 1
    assert user_store.get(db, alice["id"]).sync.last_sync_at is not None
    assert len(active_subscriptions(stack, alice["id"])) == 1
    sync_jobs = Queue(queues.SYNC, connection=stack.runtime.redis).jobs
    assert [j for j in sync_jobs if j.args and j.args[0] == alice["id"]] == []


def test_a_first_sync_that_fails_in_the_enrolment_job_is_requested_as_any_sync(stack):
    control = stack.emulator.control
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    alice = emulated_user(stack, mail="alice@contoso.com", tenant_id=tenant)
    control.create_event(alice["id"], meeting_soon())
    connect_tenant(stack, admin["id"])
    stack.runtime.tenant_wide.sync_directory(tenant)
    db = stack.runtime.db
    control.set_faults(path_prefix=f"/users/{alice['id']}/calendars/", script=[{"status": 500}] * 8)

    assert stack.runtime.tenant_wide.enrol_mailbox(alice["id"]) == "subscribed:new"
    assert db.events.count_documents({"user_id": alice["id"]}) == 0
    assert len(active_subscriptions(stack, alice["id"])) == 1, "the subscription stays"

    sync_jobs = Queue(queues.SYNC, connection=stack.runtime.redis).jobs
    assert [j.func_name for j in sync_jobs if list(j.args) == [alice["id"]]] == [queues.SYNC_USER]
    Queue(queues.SUBSCRIPTIONS, connection=stack.runtime.redis).empty()   # the directory's enrolment jobs
    control.clear_faults()
    stack.run_jobs()
    assert db.events.count_documents({"user_id": alice["id"]}) == 1, "the requested sync read it"
