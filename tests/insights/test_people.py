from __future__ import annotations

import json
import shutil

import pytest

from service.insights import people
from service.insights.people import InvalidPerson, import_rows, read_rows, styles, validate_person
from service.store import people as people_store

CSV = """email,aliases,name,team,disc.primary,disc.secondary,disc.scores.D,disc.scores.C,enneagram.type,enneagram.wing
Ann@Example.com,ann.a@example.com;ANN@ex.org,Ann,Eng,D,C,,,8,7
bob@example.com,,Bob,Eng,,,20,80,5,4
not-an-email,,X,,D,,,,,
carl@example.com,,Carl,,Q,,,,,
dee@example.com,,Dee,,,,,,5,7
ann@ex.org,,Dup,,D,,,,,
eve@example.com,,Eve,,,,,,,
"""


def test_csv_import_creates_people_and_reports_rejected_rows_with_reasons(db):
    summary = import_rows(db, read_rows(CSV, "csv"))

    assert (summary.created, summary.updated) == (3, 0)
    assert summary.rejected == [
        (4, "email is not a valid address"),
        (5, "disc.primary must be one of D, I, S, C"),
        (6, "enneagram.wing must be next to enneagram.type (4 or 6)"),
        (7, "an email repeats row 2 of this file"),
    ]
    ann = people_store.by_email(db, "ANN@EX.ORG")
    assert ann["emails"] == ["ann@example.com", "ann.a@example.com", "ann@ex.org"]
    assert ann["assessments"] == {"disc": {"primary": "D", "secondary": "C"}, "enneagram": {"type": "8", "wing": "7"}}
    assert styles(people_store.by_email(db, "bob@example.com")) == {"disc": "C", "enneagram": "5"}


def test_person_without_assessments_is_accepted(db):
    summary = import_rows(db, read_rows("email,name\neve@example.com,Eve\n", "csv"))

    assert summary.created == 1
    assert people_store.by_email(db, "eve@example.com")["assessments"] == {}


def test_json_import_updates_by_any_email_and_counts_unchanged(db):
    import_rows(db, read_rows(CSV, "csv"))
    text = json.dumps({"people": [
        {"email": "ann.a@example.com", "aliases": ["ann@example.com"], "name": "Ann B",
         "assessments": {"disc": {"primary": "Influence"}}},
        {"email": "bob@example.com", "name": "Bob", "team": "Eng",
         "assessments": {"disc": {"scores": {"D": 20, "C": 80}}, "enneagram": {"type": 5, "wing": 4}}},
        "not an object",
    ]})

    summary = import_rows(db, read_rows(text, "json"))

    assert (summary.created, summary.updated, summary.unchanged) == (0, 1, 1)
    assert summary.rejected == [(3, "row must be an object")]
    ann = people_store.by_email(db, "ann@example.com")
    assert ann["name"] == "Ann B" and ann["primary_email"] == "ann.a@example.com"
    assert styles(ann) == {"disc": "I"}
    assert people_store.by_email(db, "ann@ex.org") is None  # the row is authoritative: dropped alias freed


def test_row_whose_emails_belong_to_two_people_is_rejected(db):
    import_rows(db, read_rows(CSV, "csv"))

    summary = import_rows(db, enumerate([{"email": "ann@example.com", "aliases": ["bob@example.com"]}], 1))

    assert summary.rejected == [(1, "these emails belong to more than one existing person")]


@pytest.mark.parametrize(("row", "reason"), [
    ({"email": "a@example.com", "assessments": {"astrology": {"sign": "leo"}}}, "unknown assessment framework"),
    ({"email": "a@example.com", "assessments": {"disc": {}}}, "disc needs primary or scores"),
    ({"email": "a@example.com", "assessments": {"disc": {"primary": "D", "secondary": "D"}}}, "must differ"),
    ({"email": "a@example.com", "assessments": {"disc": {"scores": {"D": 101}}}}, "between 0 and 100"),
    ({"email": "a@example.com", "assessments": {"disc": {"scores": {"D": "lots"}}}}, "must be a number"),
    ({"email": "a@example.com", "assessments": {"disc": {"colour": "red"}}}, "unknown field"),
    ({"email": "a@example.com", "assessments": {"enneagram": {"type": "9", "wing": "1"}}}, None),
    ({"email": "a@example.com", "assessments": {"enneagram": {"type": "1", "wing": "5"}}}, "next to"),
    ({"email": "a@example.com", "name": "x" * 500}, "longer than"),
    ({"email": "a@example.com", "aliases": "b@example.com; c@example.com"}, None),
    ({"email": "a@example.com", "aliases": 7}, "aliases must be a list"),
    ({"email": ["a@example.com"]}, "email is missing"),
    ({}, "email is missing"),
])
def test_validation(row, reason):
    if reason is None:
        validate_person(row)
        return
    with pytest.raises(InvalidPerson, match=reason):
        validate_person(row)


@pytest.mark.parametrize(("text", "fmt", "reason"), [
    ("{not json", "json", "not valid JSON"),
    ('{"a": 1}', "json", "must be a list"),
    ("name,team\nx,y\n", "csv", "'email' column"),
    ("", "csv", "'email' column"),
])
def test_unreadable_files_are_refused_whole(text, fmt, reason):
    with pytest.raises(InvalidPerson, match=reason):
        list(read_rows(text, fmt))


def test_csv_row_with_unknown_column_is_rejected_not_fatal(db):
    summary = import_rows(db, read_rows("email,shoe.size\na@example.com,9\nb@example.com,\n", "csv"))

    assert summary.rejected == [(2, "unknown assessment framework 'shoe'")]
    assert summary.created == 1


def test_a_new_framework_is_a_data_addition(tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(people.DATA_DIR, data)
    spec = json.loads((data / "frameworks.json").read_text())
    themes = ["Achiever", "Arranger", "Learner", "Strategic", "Woo", "Empathy"]
    spec["frameworks"]["strengths"] = {
        "label": "CliftonStrengths", "categories": {t: t for t in themes},
        "fields": {"top": {"type": "category_list", "max": 5}}, "require_any": ["top"], "style": "lead",
    }
    (data / "frameworks.json").write_text(json.dumps(spec))
    monkeypatch.setattr(people, "DATA_DIR", data)
    people.frameworks.cache_clear()
    try:
        person = validate_person({"email": "a@example.com",
                                  "assessments": {"strengths": {"top": "learner;Woo;Achiever"}}})
        assert person["assessments"]["strengths"] == {"top": ["Learner", "Woo", "Achiever"]}
        with pytest.raises(InvalidPerson, match="at most 5"):
            validate_person({"email": "a@example.com", "assessments": {"strengths": {"top": themes}}})
    finally:
        people.frameworks.cache_clear()
