"""Token encryption, the token/tenant stores and the user-state transitions behind reconnects."""

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet

from service.config import Settings
from service.identity import crypto
from service.store import events, tenants, users, utcnow
from service.store import tokens as token_store

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
ME = {"id": "11111111-2222-3333-4444-555555555555", "displayName": "Ada Lovelace", "mail": "Ada@Contoso.com"}


def keys(*values: str) -> Settings:
    return Settings(token_keys=values)


def test_a_cache_round_trips_and_the_ciphertext_hides_it():
    blob = crypto.encrypt(keys(OLD_KEY), '{"RefreshToken": {"secret": "rt-secret-value"}}')

    assert "rt-secret-value" not in blob
    assert crypto.decrypt(keys(OLD_KEY), blob) == '{"RefreshToken": {"secret": "rt-secret-value"}}'


@pytest.mark.parametrize("tamper", [
    lambda blob: blob[:-4] + ("AAAA" if not blob.endswith("AAAA") else "BBBB"),
    lambda blob: blob[:40],
    lambda blob: "not a fernet token",
    lambda blob: "",
    lambda blob: "é" * 10,
])
def test_a_tampered_blob_is_reported_as_unreadable(tamper):
    blob = crypto.encrypt(keys(OLD_KEY), "{}")

    with pytest.raises(crypto.CacheUnreadable):
        crypto.decrypt(keys(OLD_KEY), tamper(blob))


def test_a_blob_under_a_key_we_no_longer_hold_is_unreadable():
    blob = crypto.encrypt(keys(OLD_KEY), "{}")

    with pytest.raises(crypto.CacheUnreadable):
        crypto.decrypt(keys(NEW_KEY), blob)


def test_old_keys_still_decrypt_while_the_first_key_encrypts_and_rotation_moves_blobs_to_it():
    old_blob = crypto.encrypt(keys(OLD_KEY), "{}")
    both = keys(NEW_KEY, OLD_KEY)

    rotated = crypto.rotate(both, old_blob)

    assert crypto.decrypt(both, old_blob) == "{}"
    assert crypto.decrypt(keys(NEW_KEY), rotated) == "{}"
    assert crypto.decrypt(keys(NEW_KEY), crypto.encrypt(both, "x")) == "x"


def test_replacing_a_blob_only_succeeds_if_nobody_rewrote_it(db):
    token_store.save_blob(db, "u1", "first")

    assert token_store.replace_blob(db, "u1", "first", "second") is True
    assert token_store.replace_blob(db, "u1", "first", "third") is False
    assert token_store.get_blob(db, "u1") == "second"
    assert token_store.delete(db, "u1") is True
    assert token_store.get_blob(db, "u1") is None


def test_admin_consent_is_recorded_per_tenant_and_refreshed_on_repeat(db):
    first = tenants.record_consent(db, "tid-1", None, ["https://graph.microsoft.com/Calendars.Read"])
    again = tenants.record_consent(db, "tid-1", "admin@contoso.com", ["https://graph.microsoft.com/Calendars.Read"])

    assert again["first_consented_at"] == first["consented_at"]
    assert again["consented_by"] == "admin@contoso.com"
    assert tenants.get(db, "tid-1")["_id"] == "tid-1"


def test_only_the_first_failure_moves_a_connected_user_to_needs_reconnect(db):
    users.upsert_from_graph(db, ME, "tid", "home")

    first = users.mark_needs_reconnect(db, ME["id"], "invalid_grant")
    second = users.mark_needs_reconnect(db, ME["id"], "invalid_grant")

    user = users.get(db, ME["id"])
    assert (first, second) == (True, False)
    assert user.connection.status == users.NEEDS_RECONNECT
    assert user.connection.reason == "invalid_grant"
    assert user.connection.since is not None


def test_a_disconnected_user_is_not_flipped_to_needs_reconnect(db):
    users.upsert_from_graph(db, ME, "tid", "home")
    users.set_connection_status(db, ME["id"], users.DISCONNECTED)

    assert users.mark_needs_reconnect(db, ME["id"], "invalid_grant") is False
    assert users.get(db, ME["id"]).connection.status == users.DISCONNECTED


def test_the_reconnect_mail_can_be_claimed_once_per_24_hours_and_survives_a_reconnect(db):
    now = utcnow()
    day = timedelta(hours=24)
    users.upsert_from_graph(db, ME, "tid", "home", now=now)
    users.mark_needs_reconnect(db, ME["id"], "invalid_grant", now=now)

    claimed = users.claim_reconnect_mail(db, ME["id"], day, now)
    users.upsert_from_graph(db, ME, "tid", "home", now=now)  # reconnect...
    users.mark_needs_reconnect(db, ME["id"], "invalid_grant", now=now)  # ...and lose the grant again
    too_soon = users.claim_reconnect_mail(db, ME["id"], day, now + timedelta(hours=23))
    next_day = users.claim_reconnect_mail(db, ME["id"], day, now + timedelta(hours=25))

    assert claimed is not None and too_soon is None and next_day is not None


def test_a_released_claim_lets_a_retry_send_the_mail(db):
    now = utcnow()
    users.upsert_from_graph(db, ME, "tid", "home", now=now)
    users.mark_needs_reconnect(db, ME["id"], "invalid_grant", now=now)
    users.claim_reconnect_mail(db, ME["id"], timedelta(hours=24), now)

    users.release_reconnect_mail(db, ME["id"], now, None)

    assert users.claim_reconnect_mail(db, ME["id"], timedelta(hours=24), now) is not None


def test_reconnecting_keeps_identity_history_and_preferences(db):
    first = users.upsert_from_graph(db, ME, "tid", "home")
    users.set_digest_preferences(db, ME["id"], time="07:15")
    users.choose_time_zone(db, ME["id"], "Europe/London")
    users.set_connection_status(db, ME["id"], users.DISCONNECTED)

    again = users.upsert_from_graph(db, {**ME, "displayName": "Ada King"}, "tid", "home")

    assert again.created_at == first.created_at
    assert again.digest.time == "07:15"
    assert again.time_zone == "Europe/London"
    assert again.display_name == "Ada King"
    assert again.email == "ada@contoso.com"
    assert again.connection.status == users.CONNECTED


def test_the_browser_time_zone_only_fills_an_empty_preference(db):
    users.upsert_from_graph(db, ME, "tid", "home")

    assert users.set_time_zone_if_unset(db, ME["id"], "Europe/Paris") is True
    assert users.set_time_zone_if_unset(db, ME["id"], "Asia/Tokyo") is False
    assert users.get(db, ME["id"]).time_zone == "Europe/Paris"


def test_deleting_a_users_events_takes_their_tombstones_too(db):
    db.events.insert_many([{"user_id": "a", "graph_id": "1"}, {"user_id": "a", "graph_id": "2"},
                           {"user_id": "b", "graph_id": "1"}])
    db.event_tombstones.insert_many([{"user_id": "a", "graph_id": "3"}, {"user_id": "b", "graph_id": "4"}])

    removed = events.delete_for_user(db, "a")

    assert removed == 2
    assert [(e["user_id"], e["graph_id"]) for e in db.events.find({}, {"_id": 0})] == [("b", "1")]
    assert [t["user_id"] for t in db.event_tombstones.find({})] == ["b"]
