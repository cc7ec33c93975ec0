from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.cli import digest as digest_cli
from service.store import people as people_store
from tests.support.factories import add_event, add_people, add_user, attendee


@pytest.fixture
def runner(rt, monkeypatch):
    """The CLI wired to the test's Runtime instead of one built from the environment."""
    monkeypatch.setattr(digest_cli, "runtime_from_env", lambda: rt)
    return CliRunner()


def test_people_import_reports_created_updated_rejected(runner, db, tmp_path):
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("email,aliases,name,disc.primary\nana@example.com,a@ex.org,Ana,D\nbad,,X,D\n"
                        "ben@example.com,,Ben,Z\n", encoding="utf-8")
    json_file = tmp_path / "people.json"
    json_file.write_text(json.dumps([{"email": "a@ex.org", "name": "Ana Updated"}]))

    first = runner.invoke(cli, ["people", "import", str(csv_file)])
    second = runner.invoke(cli, ["people", "import", str(json_file)])

    assert first.exit_code == 1, first.output            # rows were rejected: a script must notice
    assert "created 1, updated 0, unchanged 0, rejected 2" in first.output
    assert "row 3: email is not a valid address" in first.output
    assert "row 4: disc.primary must be one of D, I, S, C" in first.output
    assert "updated 1" in second.output and second.exit_code == 0
    assert people_store.by_email(db, "ana@example.com") is None
    assert people_store.by_email(db, "a@ex.org")["name"] == "Ana Updated"


def test_people_import_of_an_unreadable_file_fails_cleanly(runner, tmp_path):
    broken = tmp_path / "people.json"
    broken.write_text("{oops")

    result = runner.invoke(cli, ["people", "import", str(broken)])

    assert result.exit_code == 1
    assert "people.json: not valid JSON" in result.output


def test_digest_preview_prints_text_and_writes_html_without_sending(runner, db, tmp_path, smtp_inbox):
    user = add_user(db, time_zone="Asia/Kolkata")
    add_people(db)
    start = datetime(2026, 7, 1, 4, 30, tzinfo=UTC)  # 10:00 IST
    add_event(db, user.id, "g-1", start, start + timedelta(hours=1), subject="Hiring sync",
              attendees=[attendee("ben@example.com")])
    html = tmp_path / "digest.html"

    result = runner.invoke(cli, ["digest", "preview", "--user", "ME@example.com", "--date", "2026-07-01",
                                 "--html", str(html)])

    assert result.exit_code == 0, result.output
    assert "Subject: Preview: Your day, Wed 1 Jul: 1 meeting" in result.output
    assert "10:00-11:00  Hiring sync" in result.output
    assert "<html" in html.read_text()
    assert smtp_inbox.messages == []
    assert db.digests_sent.count_documents({}) == 0


def test_digest_preview_of_a_day_the_user_did_not_choose_says_why_it_would_not_be_sent(runner, db):
    add_user(db, digest={"days": [0, 1, 2, 3, 4]})

    result = runner.invoke(cli, ["digest", "preview", "--user", "me@example.com", "--date", "2026-07-04"])

    assert result.exit_code == 0, result.output
    assert "A preview: Saturdays are not among your digest days (Mon to Fri), so this one would not " \
           "be sent." in result.output


def test_digest_preview_for_an_unknown_user(runner):
    result = runner.invoke(cli, ["digest", "preview", "--user", "ghost@example.com"])

    assert result.exit_code == 1 and "no user 'ghost@example.com'" in result.output
