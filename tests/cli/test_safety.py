"""A CLI that cannot mislead: data commands refuse a private in-memory store (or take --mongodb-uri), an
unreachable dependency is one line, lists have headers and emails, an import reports every problem."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.cli import context as cli_context
from service.cli import digest as digest_cli
from service.cli import subscriptions as subscriptions_cli
from service.cli import sync as sync_cli
from service.cli import users as users_cli
from service.graph import GraphClient
from service.store import users
from tests.support.factories import add_user

DATA_COMMANDS = [["people", "import", "people.csv"], ["digest", "preview", "--user", "me@example.com"],
                 ["subscriptions", "list"], ["users", "list"], ["sync", "me@example.com"], ["webhooks", "list"],
                 ["tenants", "domains", "t-1"], ["init-db"], ["rotate-keys"], ["reconcile"]]


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    """No MONGODB_URI or REDIS_URL: what a newcomer's shell has."""
    for name in ("MONGODB_URI", "REDIS_URL", "CALSYNC_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALSYNC_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "people.csv").write_text("email\na@example.com\n")


@pytest.mark.parametrize("argv", DATA_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_data_commands_refuse_a_private_in_memory_store_with_one_line(bare_env, argv):
    result = CliRunner().invoke(cli, argv)

    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "MONGODB_URI is not set" in lines[0] and "--mongodb-uri" in lines[0]
    assert "Traceback" not in result.output


def test_a_queueing_command_also_wants_the_services_redis(bare_env):
    result = CliRunner().invoke(cli, ["subscriptions", "sweep"])

    assert result.exit_code == 2 and "REDIS_URL is not set" in result.output and "--redis-url" in result.output


def test_mongodb_uri_option_points_a_command_at_the_services_database(bare_env, mongodb_uri, db):
    if mongodb_uri is None:
        pytest.skip("needs a MongoDB server the command can reach")
    add_user(db, email="ana@contoso.com", name="Ana Silva", time_zone="Europe/Paris")

    host, port = db.client.address
    result = CliRunner().invoke(cli, ["users", "list", "--mongodb-uri", f"mongodb://{host}:{port}/{db.name}"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split() == ["EMAIL", "NAME", "STATUS", "WHY", "SINCE", "LAST", "SYNC",
                                                      "RESULT"]
    assert "ana@contoso.com" in result.output and "Ana Silva" in result.output


def test_an_unreachable_mongodb_is_one_line(bare_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = CliRunner().invoke(cli, ["users", "list", "--mongodb-uri", f"mongodb://127.0.0.1:{port}/calsync"])

    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: cannot reach MongoDB at 127.0.0.1:") and \
        len(result.output.strip().splitlines()) == 1, result.output


def test_an_unreachable_graph_is_one_line_not_a_traceback(rt, db, monkeypatch, make_settings, redis_conn):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = make_settings(graph_url=f"https://127.0.0.1:{port}/v1.0", authority_host=f"https://127.0.0.1:{port}")
    user = add_user(db, email="uma@contoso.com")
    monkeypatch.setattr(sync_cli, "runtime_from_env", lambda: rt)
    monkeypatch.setattr(rt, "graph_for", lambda user_id: _graph_at(rt, closed))
    monkeypatch.setattr(cli_context.Settings, "from_env", classmethod(lambda cls, env=None: closed))

    result = CliRunner().invoke(cli, ["sync", user.email])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: cannot reach Microsoft Graph at https://127.0.0.1:{port}/v1.0 (ConnectionError); "
        "check CALSYNC_GRAPH_URL and the network"]


def _graph_at(rt, settings):
    return GraphClient(rt.http, settings.graph_url, token=lambda force_refresh=False: "token", timeout=2,
                       max_attempts=1)


def test_lists_have_headers_emails_and_times_in_words(rt, db, monkeypatch):
    now = datetime.now(UTC)
    ana = add_user(db, email="ana@contoso.com", name="Ana Silva")
    users.set_connection_status(db, ana.id, "no_mailbox", "cannot sync: no Exchange Online mailbox")
    db.subscriptions.insert_one({"_id": "sub-1", "user_id": ana.id, "status": "failing", "failures": 2,
                                 "last_error": "503 ServiceUnavailable", "expires_at": now + timedelta(hours=3)})
    for module in (users_cli, subscriptions_cli):
        monkeypatch.setattr(module, "runtime_from_env", lambda: rt)
    runner = CliRunner()

    listed_users = runner.invoke(cli, ["users", "list"])
    listed_subscriptions = runner.invoke(cli, ["subscriptions", "list"])

    assert listed_users.exit_code == 0, listed_users.output
    header, rule, row = listed_users.stdout.splitlines()
    assert header.startswith("EMAIL") and set(rule.replace(" ", "")) == {"-"}
    assert "ana@contoso.com" in row and "no mailbox" in row and "cannot sync: no Exchange Online mailbox" in row
    assert listed_subscriptions.exit_code == 0, listed_subscriptions.output
    lines = listed_subscriptions.stdout.splitlines()
    assert lines[0].startswith("USER") and "EXPIRES" in lines[0]
    assert lines[2].startswith("ana@contoso.com") and "(in 3 hours)" in lines[2] and "never" in lines[2]
    assert ana.id not in lines[2].split("sub-1")[0]              # the owner shows as an email, not a UUID
    assert "(times in UTC)" in listed_subscriptions.output


def test_people_import_warns_about_unknown_columns_and_lists_every_problem(rt, db, monkeypatch, tmp_path):
    monkeypatch.setattr(digest_cli, "runtime_from_env", lambda: rt)
    sheet = tmp_path / "people.csv"
    sheet.write_text("email,Shoe.Size,DISC.Primary,enneagram\nana@example.com,9,d,3w4\nbad,,Q,1w5\n")

    result = CliRunner().invoke(cli, ["people", "import", str(sheet)])

    assert result.exit_code == 1
    assert "warning: column 'Shoe.Size' is not a column calsync knows" in result.output
    assert "created 1, updated 0, unchanged 0, rejected 1" in result.output
    assert "  row 3:\n    - email is not a valid address\n    - disc.primary must be one of D, I, S, C\n" \
           "    - enneagram.wing must be next to enneagram.type (9 or 2)" in result.output
