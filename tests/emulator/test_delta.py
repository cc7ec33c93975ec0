"""calendarView delta: paging, deltaLink, @removed, replays, recurring expansion and invalidation."""

from __future__ import annotations

from tests.support.emulated import event_body, query

WINDOW = {"startDateTime": "2030-03-01T00:00:00Z", "endDateTime": "2030-04-01T00:00:00Z"}


def delta_url(world, who: str = "me") -> str:
    base = f"{world.handle.graph_url}/{'me' if who == 'me' else 'users/' + who}/calendarView/delta"
    return f"{base}?startDateTime={WINDOW['startDateTime']}&endDateTime={WINDOW['endDateTime']}"


def make_events(emu, user_id: str, count: int, day: int = 2) -> list[dict]:
    bodies = [event_body(f"Meeting {i}", f"2030-03-{day:02d}T{8 + i % 8:02d}:00:00",
                         f"2030-03-{day:02d}T{8 + i % 8:02d}:30:00") for i in range(count)]
    return emu.control.create_events(user_id, bodies)


def test_paging_honours_maxpagesize_and_delta_link_only_on_last_page(world, emu):
    make_events(emu, world.ada["id"], 7)
    response = world.ada_graph.get(delta_url(world), headers={"Prefer": "odata.maxpagesize=3"})
    body = response.json()
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=3"
    assert body["@odata.context"].endswith("$metadata#Collection(event)")
    assert len(body["value"]) == 3 and "@odata.nextLink" in body and "@odata.deltaLink" not in body
    assert "$skiptoken" in query(body["@odata.nextLink"])
    entries, delta_link, pages = world.ada_graph.delta_all(delta_url(world), page_size=3)
    assert pages == 3 and len(entries) == 7
    assert "$deltatoken" in query(delta_link)
    assert all(e["@odata.type"] == "#microsoft.graph.event" and "body" in e for e in entries)
    sticky = world.ada_graph.get(body["@odata.nextLink"]).json()  # no Prefer header on the next page
    assert len(sticky["value"]) == 3


def test_default_page_size_is_ten(world, emu):
    make_events(emu, world.ada["id"], 12)
    body = world.ada_graph.get(delta_url(world)).json()
    assert len(body["value"]) == 10 and "@odata.nextLink" in body


def test_incremental_round_returns_changes_and_removals(world, emu):
    uid = world.ada["id"]
    first, second, third = make_events(emu, uid, 3)
    _, delta_link, _ = world.ada_graph.delta_all(delta_url(world))
    empty, delta_link, _ = world.ada_graph.delta_all(delta_link)
    assert empty == []
    emu.control.update_event(uid, first["id"], {"subject": "Renamed"})
    emu.control.delete_event(uid, second["id"])
    emu.control.update_event(uid, third["id"], event_body("Moved out", "2030-05-02T09:00:00",
                                                          "2030-05-02T10:00:00"))
    added = emu.control.create_event(uid, event_body("New", "2030-03-20T09:00:00", "2030-03-20T10:00:00"))
    entries, next_link, _ = world.ada_graph.delta_all(delta_link)
    by_id = {e["id"]: e for e in entries}
    assert by_id[first["id"]]["subject"] == "Renamed"
    assert by_id[added["id"]]["subject"] == "New"
    for gone in (second["id"], third["id"]):
        assert by_id[gone] == {"@odata.type": "#microsoft.graph.event", "id": gone, "@removed": {"reason": "deleted"}}
    replay, _, _ = world.ada_graph.delta_all(delta_link)  # the old link can be replayed
    assert {e["id"] for e in replay} == set(by_id)
    quiet, _, _ = world.ada_graph.delta_all(next_link)
    assert quiet == []


def test_changes_outside_the_window_show_up_as_removed(world, emu):
    uid = world.ada["id"]
    _, delta_link, _ = world.ada_graph.delta_all(delta_url(world))
    outside = emu.control.create_event(uid, event_body("Later", "2030-06-01T09:00:00", "2030-06-01T10:00:00"))
    entries, _, _ = world.ada_graph.delta_all(delta_link)
    assert entries == [{"@odata.type": "#microsoft.graph.event", "id": outside["id"],
                        "@removed": {"reason": "deleted"}}]


def test_recurring_series_expands_with_exceptions_and_cancellations(world, emu):
    uid = world.ada["id"]
    series = emu.control.create_event(uid, event_body(
        "Standup", "2030-03-04T09:00:00", "2030-03-04T09:15:00",
        recurrence={"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday"]},
                    "range": {"type": "numbered", "numberOfOccurrences": 6}},
    ))
    assert series["type"] == "seriesMaster" and series["recurrence"]["pattern"]["type"] == "weekly"
    entries, delta_link, _ = world.ada_graph.delta_all(delta_url(world), page_size=50)
    assert [e["type"] for e in entries] == ["occurrence"] * 6
    assert {e["seriesMasterId"] for e in entries} == {series["id"]}
    assert len({e["id"] for e in entries}) == 6 and len({e["iCalUId"] for e in entries}) == 6
    assert [e["start"]["dateTime"][:10] for e in entries] == [
        "2030-03-04", "2030-03-06", "2030-03-11", "2030-03-13", "2030-03-18", "2030-03-20"]
    assert entries[0]["start"]["dateTime"] == "2030-03-04T17:00:00.0000000"  # 09:00 PST
    assert entries[-1]["start"]["dateTime"] == "2030-03-20T16:00:00.0000000"  # 09:00 PDT after the DST switch

    moved = emu.control.update_event(uid, entries[1]["id"], {"subject": "Standup (moved)", **event_body(
        "", "2030-03-06T11:00:00", "2030-03-06T11:15:00")} | {"subject": "Standup (moved)"})
    assert moved["type"] == "exception" and moved["seriesMasterId"] == series["id"]
    emu.control.update_event(uid, entries[2]["id"], {"isCancelled": True})
    emu.control.delete_event(uid, entries[3]["id"])
    changes, _, _ = world.ada_graph.delta_all(delta_link)
    by_id = {e["id"]: e for e in changes}
    assert by_id[entries[1]["id"]]["type"] == "exception"
    assert by_id[entries[1]["id"]]["start"]["dateTime"] == "2030-03-06T19:00:00.0000000"
    assert by_id[entries[2]["id"]]["isCancelled"] is True
    assert by_id[entries[3]["id"]]["@removed"] == {"reason": "deleted"}
    assert entries[0]["id"] not in by_id  # untouched occurrences are not resent

    truth = emu.control.calendar(uid, WINDOW["startDateTime"], WINDOW["endDateTime"])
    assert len(truth) == 5
    fresh, _, _ = world.ada_graph.delta_all(delta_url(world), page_size=50)
    strip = lambda e: {k: v for k, v in e.items() if k != "@odata.type"}  # noqa: E731
    assert [strip(e) for e in fresh] == truth
    single = world.ada_graph.get(f"/me/events/{entries[1]['id']}").json()
    assert single["subject"] == "Standup (moved)"
    master = world.ada_graph.get(f"/me/events/{series['id']}").json()
    assert master["type"] == "seriesMaster" and master["recurrence"]["range"]["numberOfOccurrences"] == 6


def test_monthly_and_daily_patterns(world, emu):
    uid = world.ada["id"]
    emu.control.create_event(uid, event_body(
        "Board", "2030-01-15T10:00:00", "2030-01-15T11:00:00", tz="UTC",
        recurrence={"pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["tuesday"],
                                "index": "last"}, "range": {"type": "noEnd"}}))
    emu.control.create_event(uid, event_body(
        "Gym", "2030-03-30T07:00:00", "2030-03-30T08:00:00", tz="UTC",
        recurrence={"pattern": {"type": "daily", "interval": 2},
                    "range": {"type": "endDate", "endDate": "2030-04-30"}}))
    truth = emu.control.calendar(uid, WINDOW["startDateTime"], WINDOW["endDateTime"])
    assert [(e["subject"], e["start"]["dateTime"][:10]) for e in truth] == [
        ("Board", "2030-03-26"), ("Gym", "2030-03-30")]


def test_invalidated_delta_token_gets_410_with_location(world, emu):
    _, delta_link, _ = world.ada_graph.delta_all(delta_url(world))
    emu.control.invalidate_delta(world.ada["id"], "gone")
    response = world.ada_graph.get(delta_link)
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "resyncRequired"
    location = response.headers["Location"]
    assert query(location).get("$deltatoken") is None and "$deltatoken=" in location
    restarted, _, _ = world.ada_graph.delta_all(location)
    assert restarted == []
    emu.control.invalidate_delta(world.ada["id"], "expired")
    response = world.ada_graph.get(delta_link)
    assert response.status_code == 410 and response.json()["error"]["code"] == "SyncStateNotFound"


def test_bad_tokens_and_windows_are_graph_errors(world):
    base = f"{world.handle.graph_url}/me/calendarView/delta"
    for url in (f"{base}?$deltatoken=bogus", f"{base}?$skiptoken=bogus.1", base,
                f"{base}?startDateTime=2030-03-02T00:00:00Z&endDateTime=2030-03-01T00:00:00Z"):
        response = world.ada_graph.get(url)
        assert response.status_code == 400
        assert response.json()["error"]["code"]


def test_app_token_reads_any_users_delta_in_its_tenant(world, emu):
    make_events(emu, world.bob["id"], 2)
    entries, _, _ = world.app_graph.delta_all(delta_url(world, world.bob["id"]))
    assert len(entries) == 2
