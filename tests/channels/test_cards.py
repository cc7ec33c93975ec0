"""Every card validates against the official Adaptive Card 1.5 schema; every Block Kit message keeps Slack's
documented limits; both show no more than the mail (a private meeting stays "Private meeting"), and every
``Digest.sections`` entry appears in both, generically."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from service.digest import cards, send
from service.digest.build import Section, TipView
from service.insights.tips import Tip
from service.store import events as events_store
from tests.support.factories import add_event, add_people, add_user, attendee
from tests.support.privacy import SECRET, graph_item

SCHEMA = json.loads((Path(__file__).parent / "adaptive-card-1.5.json").read_text())
DAY = datetime(2026, 7, 1, tzinfo=UTC)


def validate_card(card: dict) -> None:
    jsonschema.Draft6Validator(SCHEMA).validate(card)
    assert card["version"] == "1.5"


def check_block_kit(blocks: list[dict], text: str) -> None:
    """Slack's documented limits: 50 blocks, 3,000 characters a section, 150 a header, 25 elements and
    unique action ids, button text 75 and value 2,000 characters, and a plain-text fallback."""
    assert 0 < len(blocks) <= 50 and text.strip()
    action_ids = []
    for block in blocks:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
        elif block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        elif block["type"] == "actions":
            assert 0 < len(block["elements"]) <= 25
            for element in block["elements"]:
                assert len(element["text"]["text"]) <= 75 and len(element.get("value", "")) <= 2000
                action_ids.append(element["action_id"])
        else:
            assert block["type"] == "context"
    assert len(action_ids) == len(set(action_ids))


def compose(rt, db, **kwargs):
    user = add_user(db)
    add_people(db)
    events_store.apply_changes(db, user.id, [graph_item("p1", DAY.replace(hour=9), SECRET, "private"),
                                             graph_item("n1", DAY.replace(hour=11), "Weekly sync")], DAY)
    digest = send.compose(db, rt.settings, user, date(2026, 7, 1), record=False)
    return user, digest


def test_the_digest_card_and_blocks_are_valid_and_keep_a_private_meeting_private(rt, db):
    _, digest = compose(rt, db)
    digest.sections.append(Section("week-ahead", "Your week ahead", ["Tuesday is your busiest day."],
                                   tips=[TipView(Tip("disc", "D", "Lead with the outcome."))],
                                   link=("See your week", "https://calsync.example/week")))

    outline = cards.digest_outline(digest)
    card = cards.adaptive_card(outline)
    blocks, text = cards.block_kit(outline)

    validate_card(card)
    check_block_kit(blocks, text)
    for rendered in (json.dumps(card), json.dumps(blocks), text):
        assert SECRET not in rendered and "Private meeting" in rendered
        assert "Your week ahead" in rendered and "Tuesday is your busiest day." in rendered
    assert "Lead with the outcome." in json.dumps(card) and "https://calsync.example/week" in json.dumps(blocks)


def test_a_day_too_long_for_slack_is_cut_to_50_blocks_with_a_link_to_the_rest(rt, db):
    user = add_user(db)
    for n in range(80):
        start = DAY.replace(hour=6) + timedelta(minutes=10 * n)
        add_event(db, user.id, f"e{n}", start, start + timedelta(minutes=10), subject=f"Meeting {n} " + "x" * 40,
                  attendees=[attendee(f"p{n}@example.com")])
    digest = send.compose(db, rt.settings, user, date(2026, 7, 1), record=False)
    digest.sections.append(Section("long", "A long section", ["word " * 1500]))

    outline = cards.digest_outline(digest)
    blocks, text = cards.block_kit(outline)

    check_block_kit(blocks, text)
    assert len(blocks) == 50 and "The rest is on your page" in blocks[-1]["text"]["text"]
    validate_card(cards.adaptive_card(outline))


@pytest.mark.parametrize("text", ["a & b < c > d", "&" * 4000, "line\n" * 900])
def test_section_text_is_escaped_and_split_within_3000_characters(text):
    blocks, fallback = cards.block_kit(cards.Outline("Title", [cards.Part("text", text)]))

    check_block_kit(blocks, fallback)
    joined = "".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    assert "<" not in joined and ">" not in joined
    assert joined.replace("\n", "") == cards.mrkdwn_escape(text).replace("\n", "")


def test_the_prep_card_and_blocks_are_valid_and_carry_the_meetings_exclude_button(rt, db, monkeypatch):
    from service.digest import prep  # noqa: PLC0415 - a test's own import
    user = add_user(db)
    add_people(db)
    nine = DAY.replace(hour=9)
    event = add_event(db, user.id, "m1", nine, nine + timedelta(minutes=30), subject="Design review",
                      attendees=[attendee("me@example.com"), attendee("ana@example.com"), attendee("zed@partner.ex")])
    captured = []
    monkeypatch.setattr(prep.channels, "deliver", lambda rt_, user_, kind, message: captured.append(message)
                        or {"email": "sent"})

    assert prep.deliver(db, rt.settings, rt.mailer, user.id, "uid-m1", nine.isoformat(), nine - timedelta(minutes=15),
                        rt=rt) == "sent"

    (message,) = captured
    validate_card(message.card)
    check_block_kit(message.blocks, message.text)
    assert message.kind == "prep" and message.text.startswith("In 15 minutes: Design review")
    assert {"action": "exclude", "kind": "prep", "meeting": str(event["_id"])} in [
        a["data"] for b in message.card["body"] if b["type"] == "ActionSet" for a in b["actions"] if "data" in a]


def test_a_meeting_whose_organizer_hid_the_attendees_shows_none_of_them_in_card_or_blocks(rt, db):
    user = add_user(db)
    add_people(db)
    ten = DAY.replace(hour=10)
    add_event(db, user.id, "h1", ten, ten + timedelta(minutes=30), subject="Town hall", hide_attendees=True,
              organizer={"name": "Cy", "email": "cy@example.com"},
              attendees=[attendee("me@example.com"), attendee("ana@example.com", "Ana Secret")])
    digest = send.compose(db, rt.settings, user, date(2026, 7, 1), record=False)

    outline = cards.digest_outline(digest)
    blocks, text = cards.block_kit(outline)

    for rendered in (json.dumps(cards.adaptive_card(outline)), json.dumps(blocks), text):
        assert "Ana Secret" not in rendered and "ana@example.com" not in rendered
        assert "Attendee list hidden by the organizer." in rendered
