"""An ``rq worker`` class for the crash-safety test: a durable store shared with the test process.

There is no MongoDB server on this machine and mongomock lives in one process, so the work horse loads
the store from a file and writes it back after every store call that the sync makes (as a real MongoDB
would have persisted each write). A SIGKILL then loses nothing that a real store would have kept.
Used as ``rq worker -w tests.workers.durable_worker.DurableWorker``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import mongomock
import requests
from bson import json_util
from rq import Worker

from service import runtime, store
from service.config import Settings
from service.graph import GraphClient
from service.runtime import Runtime
from service.store import events, sync_state, users
from service.workers import sync

JSON_OPTIONS = json_util.JSONOptions(tz_aware=True, json_mode=json_util.JSONMode.CANONICAL)


def new_db():
    db = mongomock.MongoClient(tz_aware=True)["calsync_test"]
    store.init_db(db)
    return db


def dump(db, path: str | Path) -> None:
    data = {name: list(db[name].find()) for name in db.list_collection_names()}
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json_util.dumps(data, json_options=JSON_OPTIONS))
    os.replace(tmp, path)


def load(path: str | Path, db=None):
    db = db if db is not None else new_db()
    for name, docs in json_util.loads(Path(path).read_text(), json_options=JSON_OPTIONS).items():
        if docs:
            db[name].insert_many(docs)
    return db


def _persisting(module, name: str, db, path: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        dump(db, path)
        return result

    setattr(module, name, wrapper)


def _install() -> None:
    path = os.environ["CALSYNC_TEST_DB_FILE"]
    Path(os.environ["CALSYNC_TEST_HORSE_PID"]).write_text(str(os.getpid()))
    db = load(path)
    settings = Settings(redis_url=os.environ["REDIS_URL"], data_dir=os.environ["CALSYNC_TEST_DATA_DIR"])
    runtime.install(Runtime(settings, db=db))
    graph_url = os.environ["CALSYNC_TEST_GRAPH_URL"]

    def graph_client(rt, user_id):
        session = requests.Session()
        session.trust_env = False
        return GraphClient(session, graph_url, token=lambda force_refresh=False: f"tok-{user_id}", timeout=5)

    sync.graph_client = graph_client
    for module, name in ((events, "apply_changes"), (events, "delete_missing"), (sync_state, "save"),
                         (sync_state, "record_success"), (sync_state, "record_failure"), (users, "update_fields")):
        _persisting(module, name, db, path)


class DurableWorker(Worker):
    def perform_job(self, job, queue, execution) -> bool:
        _install()
        return super().perform_job(job, queue, execution)
