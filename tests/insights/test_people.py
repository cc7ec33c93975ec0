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


def test_unknown_csv_columns_are_warned_about_once_and_ignored_not_fatal(db):
    warnings = []
    text = "Email,shoe.size,DISC.Primary,disc.colour\na@example.com,9,d,red\nb@example.com,,I,\n"

    summary = import_rows(db, read_rows(text, "csv", warn=warnings.append))

    assert summary.created == 2 and summary.rejected == []
    assert len(warnings) == 2
    assert "'shoe.size' is not a column calsync knows" in warnings[0] and "ignored" in warnings[0]
    assert "'disc.colour': disc has no such field (primary, secondary, scores)" in warnings[1]
    assert styles(people_store.by_email(db, "a@example.com")) == {"disc": "D"}


def test_a_row_reports_every_problem_it_has_not_just_the_first(db):
    text = ("email,aliases,name,disc.primary,disc.secondary,enneagram.type,enneagram.wing\n"
            "not-an-email,ok@example.com;bad@alias@x,X,Q,Z,1,5\n")

    summary = import_rows(db, read_rows(text, "csv"))

    assert summary.rejected == [(2, "email is not a valid address; alias 'bad@alias@x' is not a valid address; "
                                    "disc.primary must be one of D, I, S, C; disc.secondary must be one of D, I, "
                                    "S, C; enneagram.wing must be next to enneagram.type (9 or 2)")]
    assert summary.as_dict()["rejected"][0]["problems"][0] == "email is not a valid address"
    assert len(summary.as_dict()["rejected"][0]["problems"]) == 5


@pytest.mark.parametrize(("columns", "values", "expected"), [
    ("enneagram.type", "3w4", {"enneagram": {"type": "3", "wing": "4"}}),
    ("enneagram", "9W1", {"enneagram": {"type": "9", "wing": "1"}}),
    ("enneagram.type,enneagram.wing", "3w4,4", {"enneagram": {"type": "3", "wing": "4"}}),
    ("disc.primary", "Di", {"disc": {"primary": "D", "secondary": "I"}}),
    ("disc", "s/c", {"disc": {"primary": "S", "secondary": "C"}}),
    ("DISC.Primary", "influence", {"disc": {"primary": "I"}}),
    ("mbti16.type", "intj-a", {"mbti16": {"type": "INTJ"}}),
    ("mbti16", "Enfp", {"mbti16": {"type": "ENFP"}}),
])
def test_codes_in_any_case_and_common_notations_are_accepted(db, columns, values, expected):
    summary = import_rows(db, read_rows(f"email,{columns}\na@example.com,{values}\n", "csv"))

    assert summary.rejected == [] and summary.created == 1
    assert people_store.by_email(db, "a@example.com")["assessments"] == expected


def test_a_notation_that_contradicts_its_neighbouring_column_is_a_problem(db):
    summary = import_rows(db, read_rows("email,enneagram.type,enneagram.wing\na@example.com,3w4,2\n", "csv"))

    assert summary.rejected == [(2, "enneagram.type '3w4' says wing 4, but enneagram.wing is 2")]


def test_a_large_import_goes_in_chunks_with_every_outcome_counted(db):
    rows = [(n, {"email": f"p{n}@example.com", "assessments": {"disc": {"primary": "DISC"[n % 4]}}})
            for n in range(1, 26)]
    rows[3] = (4, {"email": "p1@example.com"})                    # repeats row 1
    progress = []

    first = import_rows(db, rows, progress=progress.append, chunk=10)
    rows[5] = (6, {"email": "p6@example.com", "name": "Renamed", "assessments": {"disc": {"primary": "I"}}})
    second = import_rows(db, rows, chunk=7)

    assert (first.created, first.updated, first.unchanged) == (24, 0, 0)
    assert first.rejected == [(4, "an email repeats row 1 of this file")] and sum(progress) == 25
    assert (second.created, second.updated, second.unchanged) == (0, 1, 23)
    assert db.people.count_documents({}) == 24
    assert people_store.by_email(db, "p6@example.com")["name"] == "Renamed"


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
