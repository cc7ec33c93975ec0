"""Several calendars per user: the list and its paging, rename, delete, per-calendar delta, shared calendars,
documented error bodies, and change notifications for every calendar of a mailbox."""

from __future__ import annotations

import pytest

from emulator.testing import ControlError
from tests.support.emulated import assert_graph_error, event_body, query, sub_body, subscribe

WINDOW = {"startDateTime": "2030-03-01T00:00:00Z", "endDateTime": "2030-04-01T00:00:00Z"}
CALENDAR_KEYS = {
    "@odata.id", "id", "name", "color", "hexColor", "isDefaultCalendar", "changeKey", "canShare",
    "canViewPrivateItems", "canEdit", "allowedOnlineMeetingProviders", "defaultOnlineMeetingProvider",
    "isTallyingResponses", "isRemovable", "owner",
}
NOT_FOUND = "The specified object was not found in the store."


def delta_url(world, calendar_id: str | None = None, who: str = "me") -> str:
    base = f"{world.handle.graph_url}/{'me' if who == 'me' else 'users/' + who}"
    if calendar_id:
        base += f"/calendars/{calendar_id}"
    return f"{base}/calendarView/delta?startDateTime={WINDOW['startDateTime']}&endDateTime={WINDOW['endDateTime']}"


def meeting(subject: str, day: int = 4, hour: int = 9) -> dict:
    return event_body(subject, f"2030-03-{day:02d}T{hour:02d}:00:00", f"2030-03-{day:02d}T{hour:02d}:30:00")


def test_every_user_has_a_default_calendar_in_graphs_shape(world, emu):
    body = world.ada_graph.get("/me/calendars").json()
    assert body["@odata.context"] == f"https://graph.microsoft.com/v1.0/$metadata#users('{world.ada['id']}')/calendars"
    assert "@odata.nextLink" not in body
    (calendar,) = body["value"]
    assert set(calendar) == CALENDAR_KEYS
    assert calendar["name"] == "Calendar" and calendar["isDefaultCalendar"] is True
    assert calendar["canEdit"] and calendar["canShare"] and calendar["canViewPrivateItems"]
    assert calendar["isRemovable"] is False and calendar["isTallyingResponses"] is True
    assert calendar["owner"] == {"name": "Ada Lovelace", "address": "ada@contoso.com"}
    assert calendar["color"] == "auto" and calendar["hexColor"] == ""
    assert calendar["allowedOnlineMeetingProviders"] == ["teamsForBusiness"]
    default = world.ada_graph.get("/me/calendar").json()
    assert default["@odata.context"].endswith("/calendars/$entity")
    assert {k: v for k, v in default.items() if k != "@odata.context"} == calendar
    by_app = world.app_graph.get(f"/users/{world.ada['id']}/calendars/{calendar['id']}").json()
    assert by_app["id"] == calendar["id"]
    assert world.app_graph.get(f"/users/{world.ada['id']}/calendar").json()["id"] == calendar["id"]
    assert [c["id"] for c in emu.control.calendars(world.ada["id"])] == [calendar["id"]]
    selected = world.ada_graph.get("/me/calendars", params={"$select": "name"}).json()["value"]
    assert selected == [{"id": calendar["id"], "name": "Calendar"}]


def test_calendar_list_pages_with_top_and_next_link(world, emu):
    uid = world.ada["id"]
    created = [emu.control.create_calendar(uid, f"Project {i:02d}") for i in range(12)]
    first = world.ada_graph.get("/me/calendars", headers={"Prefer": "odata.maxpagesize=3"})
    body = first.json()
    assert len(body["value"]) == 10, "Outlook's default page of 10; maxpagesize is not documented for this list"
    assert "Preference-Applied" not in first.headers
    assert body["value"][0]["isDefaultCalendar"] is True
    assert query(body["@odata.nextLink"])["$skip"] == ["10"]
    rest = world.ada_graph.get(body["@odata.nextLink"]).json()
    assert len(rest["value"]) == 3 and "@odata.nextLink" not in rest

    seen, url, pages = [], "/me/calendars?$top=5", 0
    while url:
        page = world.ada_graph.get(url).json()
        seen += [c["name"] for c in page["value"]]
        url, pages = page.get("@odata.nextLink"), pages + 1
    assert pages == 3
    assert seen == ["Calendar"] + [c["name"] for c in created]
    assert all(c["isDefaultCalendar"] is False and c["isRemovable"] is True for c in created)


def test_rename_changes_name_and_change_key_and_names_stay_unique(world, emu):
    uid = world.ada["id"]
    work = emu.control.create_calendar(uid, "Work", color="lightBlue")
    renamed = emu.control.rename_calendar(uid, work["id"], "Work (old)")
    assert renamed["id"] == work["id"] and renamed["changeKey"] != work["changeKey"]
    listed = {c["id"]: c for c in world.ada_graph.get("/me/calendars").json()["value"]}
    assert listed[work["id"]]["name"] == "Work (old)" and listed[work["id"]]["color"] == "lightBlue"
    assert listed[work["id"]]["changeKey"] == renamed["changeKey"]
    with pytest.raises(ControlError) as taken:
        emu.control.create_calendar(uid, "calendar")
    assert taken.value.status == 409 and taken.value.body["error"]["code"] == "ErrorFolderExists"
    with pytest.raises(ControlError) as blank:
        emu.control.rename_calendar(uid, work["id"], "  ")
    assert blank.value.status == 400


def test_delete_removes_the_calendar_and_its_events_with_deleted_notifications(world, receiver, emu):
    uid = world.ada["id"]
    sub = subscribe(world, receiver, changeType="deleted")
    work = emu.control.create_calendar(uid, "Work")
    doomed = emu.control.create_events(uid, [meeting("One"), meeting("Two", hour=11)], calendar_id=work["id"])
    kept = emu.control.create_event(uid, meeting("Default"))

    emu.control.delete_calendar(uid, work["id"])
    emu.control.wait_idle()
    notes = receiver.notifications("/notify")
    assert sorted(n["resourceData"]["id"] for n in notes) == sorted(e["id"] for e in doomed)
    assert {(n["changeType"], n["subscriptionId"]) for n in notes} == {("deleted", sub["id"])}
    assert all(n["resource"] == f"Users/{uid}/Events/{n['resourceData']['id']}" for n in notes)

    assert [c["name"] for c in world.ada_graph.get("/me/calendars").json()["value"]] == ["Calendar"]
    for event in doomed:
        assert_graph_error(world.ada_graph.get(f"/me/events/{event['id']}"), 404, "ErrorItemNotFound")
    assert world.ada_graph.get(f"/me/events/{kept['id']}").status_code == 200
    with pytest.raises(ControlError) as gone:
        emu.control.calendar(uid, WINDOW["startDateTime"], WINDOW["endDateTime"], calendar_id=work["id"])
    assert gone.value.status == 404 and gone.value.body["error"]["code"] == "ErrorItemNotFound"

    default_id = emu.control.calendars(uid)[0]["id"]
    with pytest.raises(ControlError) as refused:
        emu.control.delete_calendar(uid, default_id)
    assert refused.value.status == 400 and refused.value.body["error"]["code"] == "ErrorInvalidRequest"
    assert set(refused.value.body["error"]) == {"code", "message", "innerError"}


def test_delta_rounds_are_per_calendar_and_independent(world, emu):
    uid = world.ada["id"]
    work = emu.control.create_calendar(uid, "Work")
    home = emu.control.create_calendar(uid, "Home")
    in_default = emu.control.create_event(uid, meeting("Default"))
    in_work = emu.control.create_events(uid, [meeting(f"Work {i}", hour=8 + i) for i in range(3)],
                                        calendar_id=work["id"])

    default_entries, default_link, _ = world.ada_graph.delta_all(delta_url(world))
    assert [e["id"] for e in default_entries] == [in_default["id"]]
    assert default_link.startswith(f"{world.handle.graph_url}/me/calendarView/delta?")

    work_base = f"{world.handle.graph_url}/me/calendars/{work['id']}/calendarView/delta?"
    first = world.ada_graph.get(delta_url(world, work["id"]), headers={"Prefer": "odata.maxpagesize=2"}).json()
    assert first["@odata.nextLink"].startswith(work_base)
    work_entries, work_link, pages = world.ada_graph.delta_all(delta_url(world, work["id"]), page_size=2)
    assert pages == 2 and sorted(e["id"] for e in work_entries) == sorted(e["id"] for e in in_work)
    assert work_link.startswith(work_base)
    home_entries, home_link, _ = world.ada_graph.delta_all(delta_url(world, home["id"], who=uid))
    assert home_entries == []

    emu.control.update_event(uid, in_work[0]["id"], {"subject": "Work 0 (moved)"})
    changed, work_link, _ = world.ada_graph.delta_all(work_link)
    assert [(e["id"], e["subject"]) for e in changed] == [(in_work[0]["id"], "Work 0 (moved)")]
    assert world.ada_graph.delta_all(default_link)[0] == [], "a change in Work is not one of the default calendar's"
    assert world.ada_graph.delta_all(home_link)[0] == [], "nor one of Home's, not even as @removed"

    truth = emu.control.calendar(uid, WINDOW["startDateTime"], WINDOW["endDateTime"], calendar_id=work["id"])
    fresh, _, _ = world.ada_graph.delta_all(delta_url(world, work["id"]))
    assert sorted(e["id"] for e in fresh) == sorted(e["id"] for e in truth)
    listed = world.ada_graph.get(f"/me/calendars/{work['id']}/calendarView", params={**WINDOW, "$top": "2"}).json()
    assert len(listed["value"]) == 2 and query(listed["@odata.nextLink"])["$skip"] == ["2"]

    token = query(work_link)["$deltatoken"][0]
    crossed = world.ada_graph.get(f"{world.handle.graph_url}/me/calendarView/delta?$deltatoken={token}")
    assert_graph_error(crossed, 400, "SyncStateInvalid")


def test_events_in_any_calendar_are_readable_by_id(world, emu):
    uid = world.ada["id"]
    work = emu.control.create_calendar(uid, "Work")
    event = emu.control.create_event(uid, meeting("Offsite"), calendar_id=work["id"])
    assert world.app_graph.get(f"/users/{uid}/events/{event['id']}").json()["subject"] == "Offsite"
    assert world.ada_graph.get(f"/me/calendars/{work['id']}/events/{event['id']}").json()["id"] == event["id"]
    default_id = emu.control.calendars(uid)[0]["id"]
    assert_graph_error(world.ada_graph.get(f"/me/calendars/{default_id}/events/{event['id']}"), 404,
                       "ErrorItemNotFound")


@pytest.mark.parametrize("path", [
    "/me/calendars/AAMkADNiunknown", "/me/calendars/AAMkADNiunknown/calendarView/delta",
    "/me/calendars/AAMkADNiunknown/calendarView", "/me/calendars/AAMkADNiunknown/events/AAMkAGI2x",
])
def test_unknown_calendar_is_item_not_found(world, path):
    body = assert_graph_error(world.ada_graph.get(path, params=WINDOW), 404, "ErrorItemNotFound")
    assert body["error"]["message"] == NOT_FOUND


def test_calendar_deleted_mid_round_and_its_delta_link_answer_404(world, emu):
    uid = world.ada["id"]
    work = emu.control.create_calendar(uid, "Work")
    emu.control.create_events(uid, [meeting(f"W{i}", hour=8 + i) for i in range(5)], calendar_id=work["id"])
    _, delta_link, _ = world.ada_graph.delta_all(delta_url(world, work["id"]))
    page = world.ada_graph.get(delta_url(world, work["id"]), headers={"Prefer": "odata.maxpagesize=2"}).json()
    next_link = page["@odata.nextLink"]

    emu.control.delete_calendar(uid, work["id"])
    for url in (next_link, delta_link):
        body = assert_graph_error(world.ada_graph.get(url), 404, "ErrorItemNotFound")
        assert body["error"]["message"] == NOT_FOUND
    assert world.ada_graph.get(delta_url(world)).status_code == 200, "the default calendar is untouched"


def test_a_mailbox_subscription_covers_every_own_calendar(world, receiver, emu):
    uid = world.ada["id"]
    sub = subscribe(world, receiver)
    app_sub = world.app_graph.post("/subscriptions", sub_body(
        receiver, resource=f"users/{uid}/events", notificationUrl=f"{receiver.url}/app")).json()
    work = emu.control.create_calendar(uid, "Work")
    event = emu.control.create_event(uid, meeting("Second calendar"), calendar_id=work["id"])
    emu.control.update_event(uid, event["id"], {"subject": "Second calendar!"})
    emu.control.delete_event(uid, event["id"])
    emu.control.wait_idle()
    for path, sub_id in (("/notify", sub["id"]), ("/app", app_sub["id"])):
        notes = receiver.notifications(path)
        assert [n["changeType"] for n in notes] == ["created", "updated", "deleted"]
        assert {n["resourceData"]["id"] for n in notes} == {event["id"]}
        assert {n["subscriptionId"] for n in notes} == {sub_id}
        assert notes[0]["resource"] == f"Users/{uid}/Events/{event['id']}"


def test_per_calendar_subscription_resources_are_not_supported(world, receiver, emu):
    work = emu.control.create_calendar(world.ada["id"], "Work")
    for resource in (f"me/calendars/{work['id']}/events", f"users/{world.ada['id']}/calendars/{work['id']}/events"):
        response = world.ada_graph.post("/subscriptions", sub_body(receiver, resource=resource))
        assert_graph_error(response, 400, "InvalidRequest")


def test_a_calendar_shared_by_another_user(world, receiver, emu):
    ada, bob = world.ada["id"], world.bob["id"]
    copy = emu.control.create_calendar(ada, "Team", owner_user_id=bob)
    team_id = copy["sourceCalendarId"]
    assert copy["ownerUserId"] == bob and team_id != copy["id"], "the share recipient's copy has its own id"
    owned = {c["id"]: c for c in emu.control.calendars(bob)}
    assert owned[team_id]["canEdit"] is True and owned[team_id]["owner"]["address"] == "bob@contoso.com"

    listed = world.ada_graph.get("/me/calendars").json()["value"]
    assert [c["name"] for c in listed] == ["Calendar", "Team"]
    shared = listed[1]
    assert shared["id"] == copy["id"] and shared["owner"] == {"name": "Bob Babbage", "address": "bob@contoso.com"}
    assert (shared["canEdit"], shared["canShare"], shared["canViewPrivateItems"], shared["isDefaultCalendar"]) == (
        False, False, False, False)

    bob_sub = world.app_graph.post("/subscriptions", sub_body(
        receiver, resource=f"users/{bob}/events", notificationUrl=f"{receiver.url}/bob")).json()
    subscribe(world, receiver)  # ada's own mailbox
    event = emu.control.create_event(bob, meeting("Team sync"), calendar_id=team_id)
    emu.control.wait_idle()
    assert [n["subscriptionId"] for n in receiver.notifications("/bob")] == [bob_sub["id"]]
    assert receiver.notifications("/notify") == [], "a calendar shared from someone else is not ada's mailbox"

    # Ada's own list: Calendars.Read reads the shared copy (Graph: "the local copy ... in Adele's mailbox").
    entries, _, _ = world.ada_graph.delta_all(delta_url(world, copy["id"]))
    assert [e["id"] for e in entries] == [event["id"]]
    assert world.ada_graph.get(f"/me/events/{event['id']}").json()["subject"] == "Team sync"

    # Directly from Bob's mailbox: needs Calendars.Read.Shared.
    direct = delta_url(world, team_id, who=bob)
    assert_graph_error(world.ada_graph.get(direct), 403, "ErrorAccessDenied")
    assert_graph_error(world.ada_graph.get(f"/users/{bob}/calendars/{team_id}"), 403, "ErrorAccessDenied")
    shared_graph = world.graph(emu.control.token(user_id=ada, scopes=["Calendars.Read.Shared", "User.Read"]))
    entries, link, _ = shared_graph.delta_all(direct)
    assert [e["id"] for e in entries] == [event["id"]]
    assert link.startswith(f"{world.handle.graph_url}/users/{bob}/calendars/{team_id}/calendarView/delta?")
    assert shared_graph.get(f"/users/{bob}/calendars/{team_id}").json()["canEdit"] is False  # read-only share
    assert_graph_error(shared_graph.get(delta_url(world, who=bob)), 403, "ErrorAccessDenied")  # not shared

    emu.control.delete_calendar(ada, copy["id"])  # removing the copy leaves Bob's calendar and events
    assert team_id in {c["id"] for c in emu.control.calendars(bob)}
    assert world.app_graph.get(f"/users/{bob}/events/{event['id']}").status_code == 200
    assert_graph_error(shared_graph.get(direct), 403, "ErrorAccessDenied")


def test_sharing_an_existing_calendar_and_owner_deletion(world, emu):
    ada, bob = world.ada["id"], world.bob["id"]
    bob_default = emu.control.calendars(bob)[0]
    copy = emu.control.create_calendar(ada, None, owner_user_id=bob, calendar_id=bob_default["id"])
    assert copy["name"] == "Bob Babbage" and copy["sourceCalendarId"] == bob_default["id"]
    with pytest.raises(ControlError) as twice:
        emu.control.create_calendar(ada, None, owner_user_id=bob, calendar_id=bob_default["id"])
    assert twice.value.status == 409
    team = emu.control.create_calendar(ada, "Team", owner_user_id=bob)
    emu.control.delete_calendar(bob, team["sourceCalendarId"])
    assert [c["id"] for c in emu.control.calendars(ada)][1:] == [copy["id"]], "the owner's deletion drops the copy"
    assert_graph_error(world.ada_graph.get(f"/me/calendars/{team['id']}"), 404, "ErrorItemNotFound")


def test_bad_calendar_input_is_refused(world, emu):
    ada = world.ada["id"]
    for fields in ({"name": ""}, {"name": 5}, {"name": "x" * 256}, {"name": "x", "color": "plaid"},
                   {"name": "x", "owner_user_id": ada}, {"name": "x", "owner_user_id": "nobody"},
                   {"owner_user_id": world.bob["id"], "calendar_id": "AAMkADNinope"}):
        response = emu.control.session.post(f"{emu.base_url}/_emulator/users/{ada}/calendars", json=fields,
                                            timeout=5)
        assert response.status_code == 400, fields
    with pytest.raises(ControlError) as unknown:
        emu.control.create_event(ada, meeting("x"), calendar_id="AAMkADNinope")
    assert unknown.value.status == 404
    with pytest.raises(ControlError) as batch:
        emu.control.create_events(ada, [meeting("a"), meeting("b") | {"calendar_id": "AAMkADNinope"}])
    assert batch.value.status == 400 and "events[1]" in batch.value.body["error"]["message"]
    assert emu.control.calendar(ada, WINDOW["startDateTime"], WINDOW["endDateTime"]) == []
