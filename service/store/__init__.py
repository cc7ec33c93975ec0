"""The data layer: the one place that talks to MongoDB.

Each domain module (``users``, ``events``, ``subscriptions``…) owns its collections, queries and
``INDEXES``; routes and jobs call those functions and never use pymongo directly. Datetimes are
stored as UTC and come back timezone-aware (``tz_aware=True``).
"""

from __future__ import annotations

import importlib
import logging
from datetime import UTC, datetime

import mongomock
from pymongo import MongoClient
from pymongo.database import Database

from service.config import Settings
from service.store import mongomock_compat

log = logging.getLogger(__name__)

# Modules that declare ``INDEXES = {collection: [IndexModel, ...]}``. init_db() applies them all.
DOMAIN_MODULES = (
    "service.store.users",
    "service.store.tenantwide",
    "service.store.events",
    "service.store.subscriptions",
    "service.store.people",
    "service.store.digests",
    "service.store.preps",
    "service.store.coaching",
    "service.store.tenants",
    "service.store.tokens",
    "service.store.calendars",
    "service.store.exclusions",
    "service.store.weeks",
    "service.store.ops",
    "service.store.migrations",
    "service.store.outbound",
    "service.store.activity",
    "service.store.channels",
    "service.store.series",
)

EMBEDDED_WARNING = (
    "MONGODB_URI is not set: using the embedded in-memory store (mongomock). NOTHING PERSISTS - "
    "every user, token and event is lost when this process stops."
)


def connect(settings: Settings) -> Database:
    """Return the calsync database: real MongoDB if MONGODB_URI is set, else in-process mongomock."""
    if settings.embedded_mongo:
        log.warning(EMBEDDED_WARNING)
        return embedded_client()[settings.mongodb_db]
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


def embedded_client() -> mongomock.MongoClient:
    """A mongomock client (the embedded store), able to run the bulk writes the store sends."""
    mongomock_compat.install()
    return mongomock.MongoClient(tz_aware=True)


def declared_indexes(attribute: str = "INDEXES") -> dict[str, list]:
    """Every index the domain modules declare (or, with ``RETIRED_INDEXES``, once declared), by collection."""
    indexes: dict[str, list] = {}
    for name in DOMAIN_MODULES:
        module = importlib.import_module(name)
        for collection, models in getattr(module, attribute, {}).items():
            indexes.setdefault(collection, []).extend(models)
    return indexes


def init_db(db: Database) -> dict[str, list[str]]:
    """Create every declared index and drop the ones we retired; safe to run again."""
    created = {}
    for collection, names in declared_indexes("RETIRED_INDEXES").items():
        present = set(db[collection].index_information())
        for name in names:
            if name in present:
                db[collection].drop_index(name)
                log.info("dropped retired index %s.%s", collection, name)
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
