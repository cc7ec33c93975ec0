from __future__ import annotations

import re

import pytest

from service.digest.people import frameworks
from service.digest.tips import group_notes, library, tips_for

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


def test_tip_text_avoids_absolute_labels():
    texts = [t for doc in library().values() for s in doc["styles"].values() for t in s["tips"]]
    texts += [t for doc in library().values() for t in doc["pairs"].values()]

    assert all(not re.search(r"\b(always|never|all \w+s are|lazy|bossy|emotional)\b", t, re.I) for t in texts)
    assert all(10 < len(t) < 200 for t in texts)


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
