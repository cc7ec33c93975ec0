"""Data migrations, run once each by ``calsync init-db`` (the Procfile's release step).

Each one is recorded in the ``migrations`` collection when it finishes, so a release scans the data
only the first time; running it again (or two releases at once) repeats nothing harmful.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pymongo.database import Database

from service.config import Settings
from service.digest import plan
from service.store import calendars, subscriptions, users
from service.store import migrations as ledger

log = logging.getLogger(__name__)


def _digest_schedules(db: Database, settings: Settings) -> int:
    """Users stored before digests were scheduled by instant get their ``digest.next_at``."""
    return plan.backfill(db, settings.digest_default_time)


def _subscription_markers(db: Database, settings: Settings) -> int:
    """Connected users stored before the repair marker existed, and holding no live subscription, get it."""
    live = subscriptions.users_with_live_subscription(db)
    marked = 0
    for user_id in users.connected_ids(db):
        if user_id not in live:
            users.mark_subscription_missing(db, user_id)
            marked += 1
    return marked


def _client_state_digests(db: Database, settings: Settings) -> int:
    """Subscriptions stored with their clientState in clear keep only its SHA-256 digest."""
    return subscriptions.hash_client_states(db)


def _per_calendar_cursors(db: Database, settings: Settings) -> int:
    """Delta cursors moved from the user to each of their calendars."""
    return calendars.retire_user_cursors(db)


def _immutable_id_subscriptions(db: Database, settings: Settings) -> int:
    """Subscriptions created without ``Prefer: IdType="ImmutableId"`` are marked for a replacement without a gap.

    Only a mark: the release step makes no Graph call. The renewal sweep (every 5 minutes) queues one
    ``switch_subscription`` job per marked subscription, spread per tenant; each job translates the owner's
    stored ids and creates the new subscription before deleting the old one (service.subscriptions.lifecycle).
    """
    return subscriptions.mark_for_immutable_ids(db)


MIGRATIONS: tuple[tuple[str, Callable[[Database, Settings], int]], ...] = (
    ("2026-12-digest-next-at", _digest_schedules),
    ("2026-12-subscription-missing-since", _subscription_markers),
    ("2026-12-per-calendar-cursors", _per_calendar_cursors),
    ("2026-12-client-state-digests", _client_state_digests),
    ("2027-01-immutable-id-subscriptions", _immutable_id_subscriptions),
)


def run(db: Database, settings: Settings) -> dict[str, int]:
    """Run every migration not yet recorded; returns how many documents each one changed."""
    done = {}
    for name, migrate in MIGRATIONS:
        if ledger.done(db, name):
            continue
        done[name] = migrate(db, settings)
        ledger.record(db, name, done[name])
        log.info("migration %s changed %d document(s)", name, done[name])
    return done
