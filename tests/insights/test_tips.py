from __future__ import annotations

import re

import pytest

from service.insights.people import frameworks
from service.insights.tips import candidates, group_notes, library, size_notes, tips_for

DISC_PEOPLE = {code: {"_id": code, "assessments": {"disc": {"primary": code}}} for code in "DISC"}


@pytest.mark.parametrize("name", ["disc", "enneagram"])
def test_tips_files_cover_every_style_and_name_only_declared_codes(name):
    doc, codes = library()[name], set(frameworks()[name]["categories"])

    assert set(doc["styles"]) == codes
    assert all(len(style["tips"]) >= 3 for style in doc["styles"].values())
    for pair in doc["pairs"]:
        mine, theirs = pair.split("+")
        assert {mine, theirs} <= codes
    for rule in doc["group_notes"]:
        assert set(rule.get("min", {})) | set(rule.get("max", {})) <= codes, rule["id"]


def test_disc_pairings_cover_every_combination():
    assert set(library()["disc"]["pairs"]) == {f"{a}+{b}" for a in "DISC" for b in "DISC"}


def _all_texts() -> list[str]:
    texts = [t for doc in library().values() for s in doc["styles"].values() for t in s["tips"]]
    texts += [t for doc in library().values() for t in doc["pairs"].values()]
    texts += [rule["text"] for doc in library().values() for rule in doc.get("sizes", [])]
    return texts + [rule["text"] for doc in library().values() for rule in doc["group_notes"]]


def test_tip_text_avoids_absolute_labels():
    texts = _all_texts()

    assert all(not re.search(r"\b(always|never|all \w+s are|lazy|bossy|emotional)\b", t, re.I) for t in texts)
    assert all(10 < len(t) < 200 for t in texts)


def test_every_tip_is_unique_so_the_coaching_history_tells_them_apart():
    texts = _all_texts()
    keys = [c.key for person in DISC_PEOPLE.values() for c in candidates(person, {"disc": "D"}, "s")]

    assert len(texts) == len(set(texts))
    assert len(keys) == len(set(keys))


def test_the_enneagram_pairings_name_two_different_types_and_there_are_new_tips_enough():
    pairs = library()["enneagram"]["pairs"]

    assert len(pairs) >= 12 and all(a != b for a, b in (p.split("+") for p in pairs))
    new = len(pairs) + sum(len(doc.get("sizes", [])) for doc in library().values())
    assert new >= 20


@pytest.mark.parametrize("name", ["disc", "enneagram"])
def test_size_tips_cover_every_meeting_size_once_and_name_unique_ids(name):
    rules = library()[name]["sizes"]

    assert len({r["id"] for r in rules}) == len(rules)
    for people in range(2, 300):
        fitting = [r for r in rules if r.get("min_people", 0) <= people <= r.get("max_people", 10**6)]
        assert len(fitting) == 1, (name, people)
    assert all(set(r) <= {"id", "min_people", "max_people", "text"} for r in rules)


def test_size_notes_pick_one_tip_per_framework_for_the_meeting_size():
    assert [t.style for t in size_notes(2)] == ["one-on-one", "one-on-one"]
    assert [t.style for t in size_notes(40)] == ["large-room", "large-room"]
    assert size_notes(1) == []


def test_tips_for_pairs_with_the_users_style_and_rotates_by_day():
    with_pair = tips_for(DISC_PEOPLE["C"], {"disc": "D"}, "2026-07-01:e1")
    without = tips_for(DISC_PEOPLE["C"], {}, "2026-07-01:e1")
    days = {tips_for(DISC_PEOPLE["C"], {}, f"2026-07-{d:02d}:e1")[0].text for d in range(1, 15)}

    assert len(with_pair) == 2 and with_pair[0].text == library()["disc"]["pairs"]["D+C"]
    assert len(without) == 1
    assert len(days) > 1
    assert tips_for(None, {}, "x") == [] and tips_for({"assessments": {}}, {}, "x") == []


def test_group_notes_follow_the_mix():
    notes = group_notes("disc", {"D": 3, "C": 1})

    assert any(n.startswith("Several fast deciders and one careful analyst") for n in notes)
    assert any(n.startswith("Several people here like to decide quickly") for n in notes)
    assert not any("careful analyst" in n for n in group_notes("disc", {"D": 2, "C": 2}))
    assert group_notes("disc", {"D": 1}) == []
    assert group_notes("mbti16", {"INTJ": 3}) == []
