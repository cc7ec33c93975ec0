"""The emulated directory as Microsoft's SDK reads it: users/delta (first round, pages, the delta link, changes
and deletions) and a group's transitive members, every body judged against the v1.0 schema; the permissions
Microsoft documents for each (User.Read.All; GroupMember.Read.All); per-app mailbox scopes; password changes."""

from __future__ import annotations

import requests
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.user_collection_response import UserCollectionResponse
from msgraph.generated.users.delta.delta_get_response import DeltaGetResponse
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder

from tests.support.sdk_contract import judge, run, sdk_client

FIELDS = ["id", "displayName", "mail", "userPrincipalName", "accountEnabled", "userType"]


def _org(control):
    tenant = control.create_tenant(display_name="Contoso")["id"]
    made = {name: control.create_user(tenant_id=tenant, mail=f"{name}@contoso.com", **extra)
            for name, extra in (("ada", {}), ("bo", {}), ("gus", {"user_type": "Guest"}),
                                ("off", {"account_enabled": False}))}
    return tenant, made


def test_users_delta_through_the_sdk(emu):
    control = emu.control
    tenant, made = _org(control)
    control.create_user(tenant_id=control.create_tenant(display_name="Other")["id"], mail="x@other.com")
    token = control.token(tenant_id=tenant, roles=["User.Read.All"])

    async def first_round(client):
        config = RequestConfiguration(query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=FIELDS))
        config.headers.add("Prefer", "odata.maxpagesize=3")
        page = await client.users.delta.get(request_configuration=config)
        seen = list(page.value)
        while page.odata_next_link:
            page = await client.users.delta.with_url(page.odata_next_link).get()
            seen += page.value
        return seen, page.odata_delta_link

    client, _, recorder = sdk_client(emu.graph_url, emu.ca_bundle, token)
    seen, delta_link = run(first_round(client), recorder)

    assert {u.mail for u in seen} == {f"{n}@contoso.com" for n in made}
    assert {u.mail: (u.user_type, u.account_enabled) for u in seen}["gus@contoso.com"] == ("Guest", True)
    assert {u.mail: u.account_enabled for u in seen}["off@contoso.com"] is False
    assert len(recorder.exchanges) == 2 and delta_link
    for exchange in recorder.exchanges:
        assert judge(exchange.body, DeltaGetResponse) == []

    control.request("PATCH", f"/users/{made['ada']['id']}", {"account_enabled": False})
    control.request("DELETE", f"/users/{made['bo']['id']}")
    client, _, recorder = sdk_client(emu.graph_url, emu.ca_bundle, token)
    changes = run(client.users.delta.with_url(delta_link).get(), recorder)

    raw = recorder.exchanges[0].body["value"]
    assert [(u["id"], u.get("accountEnabled")) for u in raw if "@removed" not in u] == [(made["ada"]["id"], False)]
    assert [u for u in raw if "@removed" in u] == [{"id": made["bo"]["id"], "@removed": {"reason": "changed"}}]
    assert judge(recorder.exchanges[0].body, DeltaGetResponse) == [] and changes.odata_delta_link


def test_users_delta_needs_user_read_all(emu):
    tenant, _ = _org(emu.control)
    client, _, recorder = sdk_client(emu.graph_url, emu.ca_bundle,
                                     emu.control.token(tenant_id=tenant, roles=["Calendars.Read"]))

    async def attempt():
        try:
            await client.users.delta.get()
        except ODataError as exc:
            return exc.response_status_code, exc.error.code
        return None

    assert run(attempt(), recorder) == (403, "Authorization_RequestDenied")


def test_a_groups_transitive_members_through_the_sdk(emu):
    control = emu.control
    tenant, made = _org(control)
    outer = control.request("POST", "/groups", {"tenant_id": tenant, "display_name": "Pilot"})["id"]
    inner = control.request("POST", "/groups", {"tenant_id": tenant, "display_name": "Pilot EU"})["id"]
    control.request("POST", f"/groups/{outer}/members", {"add": [made["ada"]["id"], inner]})
    control.request("POST", f"/groups/{inner}/members", {"add": [made["bo"]["id"], outer]})   # a cycle, too
    client, _, recorder = sdk_client(emu.graph_url, emu.ca_bundle,
                                     control.token(tenant_id=tenant, roles=["GroupMember.Read.All", "User.Read.All"]))

    users = run(client.groups.by_group_id(outer).transitive_members.graph_user.get(), recorder)

    assert sorted(u.mail for u in users.value) == ["ada@contoso.com", "bo@contoso.com"]
    assert judge(recorder.exchanges[0].body, UserCollectionResponse) == []
    only_users = control.token(tenant_id=tenant, roles=["User.Read.All"])
    client, _, recorder = sdk_client(emu.graph_url, emu.ca_bundle, only_users)

    async def attempt():
        try:
            await client.groups.by_group_id(outer).transitive_members.graph_user.get()
        except ODataError as exc:
            return exc.response_status_code
        return None

    assert run(attempt(), recorder) == 403     # Microsoft documents GroupMember.Read.All as least privilege


def test_an_app_out_of_a_mailbox_scope_gets_access_denied(emu):
    control = emu.control
    tenant, made = _org(control)
    control.request("PUT", "/scopes", {"tenant_id": tenant, "user_ids": [made["ada"]["id"]]})
    session = requests.Session()
    session.trust_env = False
    session.verify = emu.ca_bundle
    session.headers["Authorization"] = f"Bearer {control.token(tenant_id=tenant, roles=['Calendars.Read'])}"
    inside = session.get(f"{emu.graph_url}/users/{made['ada']['id']}/calendars", timeout=10)
    outside = session.get(f"{emu.graph_url}/users/{made['bo']['id']}/calendars", timeout=10)
    delegated = session.get(f"{emu.graph_url}/me/calendars", timeout=10,
                            headers={"Authorization": f"Bearer {control.token(user_id=made['bo']['id'])}"})
    assert inside.status_code == 200 and delegated.status_code == 200   # scopes restrict app tokens only
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "ErrorAccessDenied"


def test_a_users_delta_page_costs_its_page_not_the_directory():
    """The round's order is fixed on its first page; later pages read only their own users (it was a copy of the
    whole directory per page: O(n) a page, O(n^2 / page) a round)."""
    from emulator.directory import Directory

    directory = Directory()
    users = {f"u{n:04d}": {"id": f"u{n:04d}", "tenant_id": "t", "mail": f"u{n}@x"} for n in range(1000)}
    for user in users.values():
        directory.touch(user)
    listed, read = [], []

    def live_ids(tenant):
        listed.append(tenant)
        return [uid for uid, u in users.items() if u["tenant_id"] == tenant]

    def get_user(uid):
        read.append(uid)
        return users.get(uid)

    seen, url, pages = [], None, 0
    while True:
        skip = url.split("$skiptoken=")[1] if url else None
        body = directory.delta_page("t", get_user, live_ids, None, skip, 100, "https://g/v1.0/users/delta", None)
        pages += 1
        seen += [entry["id"] for entry in body["value"]]
        url = body.get("@odata.nextLink")
        if not url:
            break
    assert pages == 10 and seen == sorted(users)
    assert listed == ["t"] and len(read) == 1000   # the directory listed once, each user read once
