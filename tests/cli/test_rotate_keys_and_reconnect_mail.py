"""`calsync rotate-keys`, the reconnect mail job (real SMTP) and the session cookie."""

import logging

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from service.app import create_app
from service.cli import cli
from service.cli import keys as auth_cli
from service.cli.keys import rotate_all
from service.identity import crypto
from service.identity.tokens import require_reconnect
from service.runtime import Runtime
from service.store import tokens as token_store
from service.store import users

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
ME = {"id": "11111111-2222-3333-4444-555555555555", "displayName": "Ada Lovelace", "mail": "ada@contoso.com"}


@pytest.fixture
def old_rt(make_settings, db, redis_conn):
    return Runtime(make_settings(token_keys=(OLD_KEY,)), db=db, redis_conn=redis_conn)


@pytest.fixture
def both_rt(make_settings, db, redis_conn):
    return Runtime(make_settings(token_keys=(NEW_KEY, OLD_KEY)), db=db, redis_conn=redis_conn)


def test_rotation_rewrites_every_cache_under_the_first_key(old_rt, both_rt, make_settings):
    for n in range(3):
        token_store.save_blob(old_rt.db, f"user-{n}", crypto.encrypt(old_rt.settings, f'{{"n": {n}}}'))

    report = rotate_all(both_rt.settings, both_rt.db)

    new_only = make_settings(token_keys=(NEW_KEY,))
    assert (report.rotated, report.unreadable) == (3, 0)
    assert [crypto.decrypt(new_only, blob) for _, blob in token_store.iter_blobs(both_rt.db)] == [
        '{"n": 0}', '{"n": 1}', '{"n": 2}']


def test_rotation_counts_and_logs_unreadable_caches_without_stopping(both_rt, caplog):
    token_store.save_blob(both_rt.db, "good", crypto.encrypt(both_rt.settings, "{}"))
    token_store.save_blob(both_rt.db, "bad", "gAAAAAtampered")

    with caplog.at_level(logging.ERROR):
        report = rotate_all(both_rt.settings, both_rt.db)

    assert (report.rotated, report.unreadable) == (1, 1)
    assert "user bad cannot be decrypted" in caplog.text


def test_the_rotate_keys_command_reports_and_fails_when_something_is_unreadable(both_rt, monkeypatch):
    token_store.save_blob(both_rt.db, "good", crypto.encrypt(both_rt.settings, "{}"))
    monkeypatch.setattr(auth_cli, "runtime_from_env", lambda: both_rt)

    ok = CliRunner().invoke(cli, ["rotate-keys"])
    token_store.save_blob(both_rt.db, "bad", "garbage")
    failed = CliRunner().invoke(cli, ["rotate-keys"])

    assert ok.exit_code == 0 and "rotated: 1" in ok.output and "unreadable: 0" in ok.output
    assert failed.exit_code == 1 and "unreadable: 1" in failed.output


def test_the_reconnect_mail_goes_out_once_with_the_connect_link(rt, smtp_inbox):
    users.upsert_from_graph(rt.db, ME, "tid", "home")
    users.mark_needs_reconnect(rt.db, ME["id"], "invalid_grant")

    sent = [rt.connections.send_reconnect_mail(ME["id"]), rt.connections.send_reconnect_mail(ME["id"])]

    assert sent == [True, False]
    assert len(smtp_inbox.messages) == 1
    message = smtp_inbox.messages[0]
    assert message["To"] == "ada@contoso.com"
    assert f"{rt.settings.public_url}/connect" in message.get_content()


def test_no_reconnect_mail_for_a_user_who_is_connected(rt, smtp_inbox):
    users.upsert_from_graph(rt.db, ME, "tid", "home")

    assert rt.connections.send_reconnect_mail(ME["id"]) is False
    assert smtp_inbox.messages == []


def test_a_failed_send_gives_the_claim_back_for_the_retry(make_settings, db, redis_conn, smtp_inbox):
    broken = Runtime(make_settings(smtp_url="smtp://127.0.0.1:1", http_timeout=2), db=db, redis_conn=redis_conn)
    users.upsert_from_graph(db, ME, "tid", "home")
    users.mark_needs_reconnect(db, ME["id"], "invalid_grant")
    with pytest.raises(OSError):
        broken.connections.send_reconnect_mail(ME["id"])

    working = Runtime(make_settings(), db=db, redis_conn=redis_conn)
    assert working.connections.send_reconnect_mail(ME["id"]) is True
    assert len(smtp_inbox.messages) == 1


def test_the_session_cookie_is_secure_when_calsync_is_served_over_https(make_settings, db, redis_conn):
    app = create_app(runtime=Runtime(make_settings(public_url="https://calsync.example"), db=db,
                                     redis_conn=redis_conn))

    response = app.test_client().get("/connect", base_url="https://calsync.example")

    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_require_reconnect_marks_once_and_queues_one_mail(rt, smtp_inbox, run_jobs):
    users.upsert_from_graph(rt.db, ME, "tid", "home")

    first = require_reconnect(rt.db, rt.redis, ME["id"], "Graph refused a fresh token")
    second = require_reconnect(rt.db, rt.redis, ME["id"], "Graph refused a fresh token")
    run_jobs()

    assert (first, second) == (True, False)
    assert users.get(rt.db, ME["id"]).connection.reason == "Graph refused a fresh token"
    assert len(smtp_inbox.messages) == 1
