"""Graph reads (users, events, $select), authentication and Graph-shaped errors, pinned to Microsoft's shapes."""

from __future__ import annotations

import re

import pytest
import requests

from emulator.testing import ControlError
from tests.support.emulated import PT, Graph, assert_graph_error, event_body

SEVEN_DIGITS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}$")
OFFSET_7 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$")


def test_me_and_users_have_graph_user_shape(world, emu):
    me = world.ada_graph.get("/me").json()
    assert me["id"] == world.ada["id"]
    assert me["displayName"] == "Ada Lovelace"
    assert me["mail"] == "ada@contoso.com"
    assert me["userPrincipalName"] == "ada@contoso.com"
    assert {"businessPhones", "givenName", "surname", "jobTitle", "preferredLanguage"} <= set(me)
    by_app = world.app_graph.get(f"/users/{world.bob['id']}").json()
    assert by_app["mail"] == "bob@contoso.com"
    by_upn = world.app_graph.get("/users/BOB@contoso.com").json()
    assert by_upn["id"] == world.bob["id"]
    settings = Graph(emu, emu.control.token(user_id=world.ada["id"], scopes=["MailboxSettings.Read"]))
    assert settings.get("/me/mailboxSettings").json()["timeZone"] == PT
    # user-get-mailboxsettings lists only MailboxSettings.Read and .ReadWrite: calendar scopes are not enough.
    assert world.ada_graph.get("/me/mailboxSettings").status_code == 403


def test_event_get_has_graph_event_shape_and_honours_select(world, emu):
    created = emu.control.create_event(world.ada["id"], event_body(
        "Design review", "2030-03-04T09:00:00", "2030-03-04T10:30:00",
        body={"contentType": "html", "content": "<p>Agenda: <b>everything</b></p>"},
        location={"displayName": "Room 1"}, isOnlineMeeting=True, onlineMeetingProvider="teamsForBusiness",
        attendees=[{"emailAddress": {"name": "Bob", "address": "bob@contoso.com"}, "type": "optional",
                    "status": {"response": "accepted", "time": "2030-03-01T10:00:00Z"}}],
    ))
    event = world.ada_graph.get(f"/me/events/{created['id']}").json()
    assert event["id"] == created["id"]
    assert event["start"] == {"dateTime": "2030-03-04T17:00:00.0000000", "timeZone": "UTC"}
    assert SEVEN_DIGITS.match(event["end"]["dateTime"])
    assert event["originalStartTimeZone"] == PT and event["originalEndTimeZone"] == PT
    assert OFFSET_7.match(event["lastModifiedDateTime"]) and OFFSET_7.match(event["createdDateTime"])
    assert event["@odata.etag"] == f'W/"{event["changeKey"]}"'
    assert event["type"] == "singleInstance" and event["seriesMasterId"] is None
    assert event["organizer"] == {"emailAddress": {"name": "Ada Lovelace", "address": "ada@contoso.com"}}
    assert event["attendees"] == [{"type": "optional", "status": {"response": "accepted",
                                                                    "time": "2030-03-01T10:00:00Z"},
                                   "emailAddress": {"name": "Bob", "address": "bob@contoso.com"}}]
    assert event["responseStatus"] == {"response": "organizer", "time": "0001-01-01T00:00:00Z"}
    assert event["body"] == {"contentType": "html", "content": "<p>Agenda: <b>everything</b></p>"}
    assert event["bodyPreview"] == "Agenda: everything"
    assert event["location"]["displayName"] == "Room 1"
    assert event["isOnlineMeeting"] is True and event["onlineMeetingProvider"] == "teamsForBusiness"
    assert event["isCancelled"] is False and event["showAs"] == "busy"
    assert event["iCalUId"].startswith("040000008200E00074C5B7101A82E008")

    selected = world.app_graph.get(f"/users/{world.ada['id']}/events/{created['id']}",
                                   params={"$select": "subject,start,isCancelled"}).json()
    assert set(selected) == {"@odata.context", "@odata.etag", "id", "subject", "start", "isCancelled"}

    local = world.ada_graph.get(f"/me/events/{created['id']}",
                                headers={"Prefer": f'outlook.timezone="{PT}"'})
    assert local.json()["start"] == {"dateTime": "2030-03-04T09:00:00.0000000", "timeZone": PT}
    assert "outlook.timezone" in local.headers["Preference-Applied"]


def test_missing_event_is_item_not_found(world):
    assert_graph_error(world.ada_graph.get("/me/events/AAMkAGI2nope"), 404, "ErrorItemNotFound")


def test_graph_requires_a_valid_bearer_token(world, emu):
    assert_graph_error(world.graph(None).get("/me"), 401, "InvalidAuthenticationToken")
    assert_graph_error(world.graph("not-a-jwt").get("/me"), 401, "InvalidAuthenticationToken")
    forged = emu.control.token(user_id=world.ada["id"])[:-4] + "AAAA"
    assert_graph_error(world.graph(forged).get("/me"), 401, "InvalidAuthenticationToken")
    emu.control.advance_clock(minutes=61)
    body = assert_graph_error(world.ada_graph.get("/me"), 401, "InvalidAuthenticationToken")
    assert "expired" in body["error"]["message"]


def test_a_user_token_reads_only_its_own_mailbox(world):
    assert_graph_error(world.ada_graph.get(f"/users/{world.bob['id']}/calendarView/delta",
                                           params={"startDateTime": "2030-01-01T00:00:00Z",
                                                   "endDateTime": "2030-02-01T00:00:00Z"}),
                       403, "ErrorAccessDenied")
    assert world.ada_graph.get(f"/users/{world.ada['id']}/calendarView/delta",
                               params={"startDateTime": "2030-01-01T00:00:00Z",
                                       "endDateTime": "2030-02-01T00:00:00Z"}).status_code == 200
    assert_graph_error(world.app_graph.get("/me"), 400, "BadRequest")


def test_app_token_cannot_read_another_tenant(world, emu):
    other = emu.control.create_tenant(display_name="Fabrikam")
    outsider = emu.control.create_user(tenant_id=other["id"], mail="eve@fabrikam.com")
    assert_graph_error(world.app_graph.get(f"/users/{outsider['id']}/events/x"), 404, "ErrorInvalidUser")


def test_control_api_requires_the_secret(emu):
    session = requests.Session()
    session.trust_env = False
    response = session.get(f"{emu.base_url}/_emulator/users", verify=emu.ca_bundle, timeout=5,
                           headers={"Authorization": "Bearer wrong"})
    assert_graph_error(response, 401, "InvalidAuthenticationToken")


@pytest.mark.parametrize("body", [
    None, [], {"subject": 5}, {"subject": "x"},
    {"subject": "x", "start": {"dateTime": "garbage", "timeZone": "UTC"}, "end": {"dateTime": "x", "timeZone": "UTC"}},
    {"subject": "x", "start": {"dateTime": "2030-01-01T10:00:00", "timeZone": "Mars/Base"},
     "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"}},
    event_body("x", "2030-01-01T10:00:00", "2030-01-01T09:00:00"),
    event_body("x", "2030-01-01T10:00:00", "2030-01-01T11:00:00", attendees=[{"emailAddress": {"address": "no"}}]),
    event_body("x", "2030-01-01T10:00:00", "2030-01-01T11:00:00", recurrence={"pattern": {"type": "hourly"}}),
])
def test_bad_control_input_gets_graph_error_bodies(world, emu, body):
    response = emu.control.session.post(f"{emu.base_url}/_emulator/users/{world.ada['id']}/events",
                                        data=b"{not json" if body is None else None,
                                        json=body, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] and error["message"] and "Traceback" not in response.text


def test_control_errors_raise_control_error_with_the_body(emu):
    with pytest.raises(ControlError) as caught:
        emu.control.create_user(mail="nobody")
    assert caught.value.status == 400
    assert caught.value.body["error"]["code"] == "InvalidRequest"
    with pytest.raises(ControlError) as caught:
        emu.control.set_faults(rate_429=2)
    assert caught.value.status == 400


def test_unknown_graph_path_is_graph_shaped(world):
    assert_graph_error(world.ada_graph.get("/me/nonsense"), 404, "ResourceNotFound")


def test_outlook_working_hours_need_mailbox_settings_read_and_read_as_set(world, emu):
    emu.control.set_working_hours(world.ada["id"], {"daysOfWeek": ["monday", "saturday"],
                                                    "startTime": "10:00:00.0000000", "endTime": "18:30:00.0000000",
                                                    "timeZone": {"name": "UTC"}})
    allowed = Graph(emu, emu.control.token(user_id=world.ada["id"], scopes=["MailboxSettings.Read"]))

    hours = allowed.get("/me/mailboxSettings/workingHours").json()

    assert hours["daysOfWeek"] == ["monday", "saturday"] and hours["endTime"] == "18:30:00.0000000"
    assert allowed.get("/me/mailboxSettings").json()["workingHours"]["startTime"] == "10:00:00.0000000"
    assert_graph_error(world.ada_graph.get("/me/mailboxSettings/workingHours"), 403, "ErrorAccessDenied")
