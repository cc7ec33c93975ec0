"""The data layer: the one place that talks to MongoDB.

Each domain module (``users``, ``events``, ``subscriptions``…) owns its collections, queries and
``INDEXES``; routes and jobs call those functions and never use pymongo directly. Datetimes are
stored as UTC and come back timezone-aware (``tz_aware=True``).
"""

from __future__ import annotations

import importlib
import logging
from datetime import UTC, datetime

from pymongo import MongoClient
from pymongo.database import Database

from service.config import Settings

log = logging.getLogger(__name__)

# Modules that declare ``INDEXES = {collection: [IndexModel, ...]}``. init_db() applies them all.
DOMAIN_MODULES = (
    "service.store.users",
    "service.store.events",
    "service.store.subscriptions",
    "service.store.people",
    "service.store.digests",
    "service.store.tenants",
    "service.store.tokens",
    "service.store.sync_state",
    "service.store.ops",
)

EMBEDDED_WARNING = (
    "MONGODB_URI is not set: using the embedded in-memory store (mongomock). NOTHING PERSISTS - "
    "every user, token and event is lost when this process stops."
)


def connect(settings: Settings) -> Database:
    """Return the calsync database: real MongoDB if MONGODB_URI is set, else in-process mongomock."""
    if settings.embedded_mongo:
        import mongomock

        log.warning(EMBEDDED_WARNING)
        client = mongomock.MongoClient(tz_aware=True)
        return client[settings.mongodb_db]
    client = MongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=2000,
        connectTimeoutMS=2000,
        socketTimeoutMS=10000,
        appname="calsync",
    )
    db = client.get_default_database(default=settings.mongodb_db)
    return db


def declared_indexes() -> dict[str, list]:
    """Every index the domain modules declare, keyed by collection."""
    indexes: dict[str, list] = {}
    for name in DOMAIN_MODULES:
        module = importlib.import_module(name)
        for collection, models in getattr(module, "INDEXES", {}).items():
            indexes.setdefault(collection, []).extend(models)
    return indexes


def init_db(db: Database) -> dict[str, list[str]]:
    """Create every declared index; safe to run again (create_indexes is idempotent)."""
    created = {}
    for collection, models in declared_indexes().items():
        created[collection] = db[collection].create_indexes(models) if models else []
    return created


def ping(db: Database) -> None:
    """Raise if MongoDB cannot be reached within the configured timeouts."""
    db.command("ping")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Normalise a datetime read from any store to aware UTC (mongomock and old data may be naive)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
