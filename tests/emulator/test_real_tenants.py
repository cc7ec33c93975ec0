"""What real tenants do that the emulator now models (issue 21): the two id formats and moves between calendars,
translateExchangeIds, request ids, the SDK's delta() form, series notifications, hidden attendees."""

from __future__ import annotations

import uuid

from tests.support.emulated import event_body, sub_body

WINDOW = "startDateTime=2030-03-01T00:00:00Z&endDateTime=2030-04-01T00:00:00Z"


def meeting(subject: str, day: int = 4, **extra) -> dict:
    return event_body(subject, f"2030-03-{day:02d}T09:00:00", f"2030-03-{day:02d}T09:30:00", **extra)


def test_every_answer_names_its_request_and_echoes_the_callers_client_request_id(world):
    mine = str(uuid.uuid4())

    ok = world.ada_graph.get("/me/calendars", headers={"client-request-id": mine})
    failed = world.ada_graph.get("/me/events/nope", headers={"client-request-id": mine})
    anonymous = world.ada_graph.get("/me/calendars")

    assert ok.status_code == 200 and ok.headers["client-request-id"] == mine
    assert uuid.UUID(ok.headers["request-id"])
    assert failed.status_code == 404 and failed.headers["client-request-id"] == mine
    assert failed.json()["error"]["innerError"]["client-request-id"] == mine
    assert failed.json()["error"]["innerError"]["request-id"] == failed.headers["request-id"]
    assert anonymous.headers["client-request-id"] == anonymous.headers["request-id"]   # none given: its own


def test_calendar_view_says_which_time_zone_it_applied(world, emu):
    emu.control.create_event(world.ada["id"], meeting("Standup"))

    tokyo = {"Prefer": 'outlook.timezone="Tokyo Standard Time"'}
    answer = world.ada_graph.get(f"/me/calendarView?{WINDOW}", headers=tokyo)

    assert answer.headers["Preference-Applied"] == 'outlook.timezone="Tokyo Standard Time"'
    assert answer.json()["value"][0]["start"] == {"dateTime": "2030-03-05T02:00:00.0000000",
                                                   "timeZone": "Tokyo Standard Time"}


def test_the_sdks_function_call_form_of_delta_is_the_same_round(world, emu):
    emu.control.create_event(world.ada["id"], meeting("Standup"))

    plain = world.ada_graph.get(f"/me/calendarView/delta?{WINDOW}")
    called = world.ada_graph.get(f"/me/calendarView/delta()?{WINDOW}")

    assert called.status_code == 200, called.text
    assert [e["id"] for e in called.json()["value"]] == [e["id"] for e in plain.json()["value"]]


def test_a_move_between_calendars_changes_the_regular_id_but_not_the_immutable_one(world, emu):
    control, ada = emu.control, world.ada
    work = control.create_calendar(ada["id"], "Work")
    created = control.create_event(ada["id"], meeting("Planning"))
    regular = world.graph(control.token(user_id=ada["id"]), immutable=False)
    before = regular.get(f"/me/events/{created['id']}").json()["id"]

    moved = control.move_event(ada["id"], created["id"], work["id"])

    assert moved["id"] == created["id"] and moved["restId"] != before
    assert world.ada_graph.get(f"/me/events/{created['id']}").json()["id"] == created["id"]
    assert regular.get(f"/me/events/{created['id']}").json()["id"] == moved["restId"]
    assert regular.get(f"/me/events/{before}").status_code == 404   # the old regular id is gone


def test_delta_reports_a_move_under_the_ids_each_client_knows(world, emu):
    control, ada = emu.control, world.ada
    work = control.create_calendar(ada["id"], "Work")
    created = control.create_event(ada["id"], meeting("Planning"))
    regular = world.graph(control.token(user_id=ada["id"]), immutable=False)
    links = {}
    for name, graph in (("immutable", world.ada_graph), ("regular", regular)):
        for calendar in ("default", work["id"]):
            path = "/me" if calendar == "default" else f"/me/calendars/{calendar}"
            _, links[name, calendar], _ = graph.delta_all(f"{world.handle.graph_url}{path}/calendarView/delta?{WINDOW}")
    old_regular = regular.get(f"/me/events/{created['id']}").json()["id"]

    moved = control.move_event(ada["id"], created["id"], work["id"])
    seen = {key: graph.delta_all(links[key])[0] for key, graph in
            ((k, world.ada_graph if k[0] == "immutable" else regular) for k in links)}

    assert [(e["id"], "@removed" in e) for e in seen["immutable", "default"]] == [(created["id"], True)]
    assert [(e["id"], "@removed" in e) for e in seen["immutable", work["id"]]] == [(created["id"], False)]
    assert [(e["id"], "@removed" in e) for e in seen["regular", "default"]] == [(old_regular, True)]
    assert [(e["id"], "@removed" in e) for e in seen["regular", work["id"]]] == [(moved["restId"], False)]


def test_notifications_follow_the_id_format_the_subscription_was_created_with(world, emu, receiver):
    control, ada = emu.control, world.ada
    work = control.create_calendar(ada["id"], "Work")
    created = control.create_event(ada["id"], meeting("Planning"))
    regular = world.graph(control.token(user_id=ada["id"]), immutable=False)
    old_regular = regular.get(f"/me/events/{created['id']}").json()["id"]
    immutable_sub = world.ada_graph.post("/subscriptions", sub_body(receiver, resource="me/events")).json()
    regular_sub = regular.post("/subscriptions", sub_body(receiver, resource=f"users/{ada['id']}/events")).json()
    assert {s["id"]: s["immutableIds"] for s in control.subscriptions()} == {
        immutable_sub["id"]: True, regular_sub["id"]: False}

    moved = control.move_event(ada["id"], created["id"], work["id"])
    control.wait_idle()

    got = sorted((n["subscriptionId"] == immutable_sub["id"], n["changeType"], n["resourceData"]["id"])
                 for n in receiver.notifications("/notify"))
    assert got == sorted([(True, "updated", created["id"]), (False, "deleted", old_regular),
                          (False, "created", moved["restId"])])


def test_translate_exchange_ids_maps_regular_ids_to_immutable_ones(world, emu):
    control, ada = emu.control, world.ada
    created = control.create_event(ada["id"], meeting("Planning"))
    regular = world.graph(control.token(user_id=ada["id"]), immutable=False)
    rest_id = regular.get(f"/me/events/{created['id']}").json()["id"]

    answer = world.ada_graph.post("/me/translateExchangeIds", {
        "inputIds": [rest_id, "AAMkAGR1unknown"], "sourceIdType": "restId", "targetIdType": "restImmutableEntryId"})
    back = world.ada_graph.post("/me/translateExchangeIds", {
        "inputIds": [created["id"]], "sourceIdType": "restImmutableEntryId", "targetIdType": "restId"})
    too_many = world.ada_graph.post("/me/translateExchangeIds", {
        "inputIds": ["x"] * 1001, "sourceIdType": "restId", "targetIdType": "restImmutableEntryId"})

    assert answer.status_code == 200, answer.text
    known, unknown = answer.json()["value"]
    assert known == {"sourceId": rest_id, "targetId": created["id"]}
    assert unknown["sourceId"] == "AAMkAGR1unknown" and unknown["errorDetails"]["code"] == "ErrorItemNotFound"
    assert back.json()["value"] == [{"sourceId": created["id"], "targetId": rest_id}]
    assert too_many.status_code == 400


def test_removing_one_occurrence_notifies_only_the_series_master(world, emu, receiver):
    control, ada = emu.control, world.ada
    series = control.create_event(ada["id"], meeting("Weekly", recurrence={
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
        "range": {"type": "numbered", "numberOfOccurrences": 4}}))
    world.ada_graph.post("/subscriptions", sub_body(receiver))
    occurrences = [e for e in world.ada_graph.get(f"/me/calendarView?{WINDOW}").json()["value"]
                   if e["seriesMasterId"] == series["id"]]

    control.delete_event(ada["id"], occurrences[1]["id"])
    control.wait_idle()

    assert [(n["changeType"], n["resourceData"]["id"]) for n in receiver.notifications("/notify")] == [
        ("updated", series["id"])]


def test_hidden_attendees_show_each_attendee_only_themselves(world, emu):
    control, ada, bob = emu.control, world.ada, world.bob
    guests = [{"emailAddress": {"address": a, "name": a}} for a in ("ada@contoso.com", "eve@contoso.com")]
    control.create_event(bob["id"], meeting("Town hall", attendees=guests, hideAttendees=True))
    control.create_event(ada["id"], meeting("Town hall", attendees=guests, hideAttendees=True,
                                            organizer={"emailAddress": {"address": "bob@contoso.com"}}))

    organizer_copy = world.graph(control.token(user_id=bob["id"])).get(f"/me/calendarView?{WINDOW}").json()["value"][0]
    attendee_copy = world.ada_graph.get(f"/me/calendarView?{WINDOW}").json()["value"][0]

    assert organizer_copy["hideAttendees"] is True and len(organizer_copy["attendees"]) == 2
    assert attendee_copy["hideAttendees"] is True
    assert [a["emailAddress"]["address"] for a in attendee_copy["attendees"]] == ["ada@contoso.com"]


def test_a_series_master_reports_cancelled_and_exception_occurrences_and_its_instances(world, emu):
    control, ada = emu.control, world.ada
    series = control.create_event(ada["id"], meeting("Weekly", recurrence={
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
        "range": {"type": "numbered", "numberOfOccurrences": 4}}))
    listed = world.ada_graph.get(f"/me/events/{series['id']}/instances?{WINDOW}").json()["value"]
    control.delete_event(ada["id"], listed[1]["id"])
    control.update_event(ada["id"], listed[2]["id"], {"subject": "Weekly (moved)"})

    master = world.ada_graph.get(f"/me/events/{series['id']}?$select=id,cancelledOccurrences"
                                 "&$expand=exceptionOccurrences").json()
    now_listed = world.ada_graph.get(f"/me/events/{series['id']}/instances?{WINDOW}").json()["value"]

    assert master["cancelledOccurrences"] == [f"OID.{series['id']}.{listed[1]['start']['dateTime'][:10]}"]
    assert [(e["id"], e["type"]) for e in master["exceptionOccurrences"]] == [(listed[2]["id"], "exception")]
    assert [e["id"] for e in now_listed] == [listed[0]["id"], listed[2]["id"], listed[3]["id"]]
    plain = world.ada_graph.get(f"/me/events/{series['id']}").json()
    assert "cancelledOccurrences" not in plain and "exceptionOccurrences" not in plain   # only when asked for


def test_the_silent_occurrence_removal_quirk_hides_the_removal_from_delta(world, emu):
    control, ada = emu.control, world.ada
    series = control.create_event(ada["id"], meeting("Weekly", recurrence={
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
        "range": {"type": "numbered", "numberOfOccurrences": 4}}))
    url = f"{world.handle.graph_url}/me/calendarView/delta?{WINDOW}"
    entries, link, _ = world.ada_graph.delta_all(url)
    control.set_quirks(silent_occurrence_removal=True)

    control.delete_event(ada["id"], entries[1]["id"])
    silent, link, _ = world.ada_graph.delta_all(link)
    control.set_quirks(silent_occurrence_removal=False)
    control.delete_event(ada["id"], series["id"])
    whole, _, _ = world.ada_graph.delta_all(link)

    assert silent == []
    assert {e["id"] for e in whole if "@removed" in e} == {entries[0]["id"], entries[2]["id"], entries[3]["id"]}


def test_a_read_basic_token_reads_events_without_bodies_and_cannot_subscribe(world, emu, receiver):
    control, ada = emu.control, world.ada
    created = control.create_event(ada["id"], meeting("Budget", body={"contentType": "text", "content": "secret"}))
    basic = world.graph(control.token(user_id=ada["id"], scopes=["Calendars.ReadBasic", "User.Read"]))
    full = world.graph(control.token(user_id=ada["id"], scopes=["Calendars.Read", "User.Read"]))

    delta, _, _ = basic.delta_all(f"{world.handle.graph_url}/me/calendarView/delta?{WINDOW}")
    single = basic.get(f"/me/events/{created['id']}").json()
    listed = basic.get("/me/calendars")
    refused = basic.post("/subscriptions", sub_body(receiver))
    allowed = full.post("/subscriptions", sub_body(receiver))

    assert [e["subject"] for e in delta] == ["Budget"] and not {"body", "bodyPreview"} & set(delta[0])
    assert single["subject"] == "Budget" and "body" not in single and "bodyPreview" not in single
    assert listed.status_code == 200
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ExtensionError"
    assert allowed.status_code == 201
    assert full.get(f"/me/events/{created['id']}").json()["body"]["content"] == "secret"
