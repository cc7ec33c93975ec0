"""An ``rq worker`` class for the crash-safety test: calsync's worker, reaching the test's Graph emulator.

The store is the test's own database on the MongoDB wire server (``MONGODB_URI``), shared with the test
process as production workers share theirs; Graph is the emulator the test process serves over HTTPS on
loopback (``CALSYNC_TEST_GRAPH_URL``, its CA in ``CALSYNC_TEST_GRAPH_CA``), reached as each user with the
emulator's token for them (``CALSYNC_TEST_GRAPH_TOKENS``, JSON: user id → token), in delta pages of
``CALSYNC_TEST_PAGE_SIZE`` events. Used as ``rq worker -w tests.support.emulated_worker.EmulatedGraphWorker``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import requests

from service import runtime
from service.graph import GraphClient
from service.sync import rounds
from service.workers.worker import Worker


def _graph_client(user_id: str) -> GraphClient:
    session = requests.Session()
    session.trust_env, session.verify = False, os.environ["CALSYNC_TEST_GRAPH_CA"]
    token = json.loads(os.environ["CALSYNC_TEST_GRAPH_TOKENS"])[user_id]
    return GraphClient(session, os.environ["CALSYNC_TEST_GRAPH_URL"], token=lambda force_refresh=False: token,
                       timeout=10)


class EmulatedGraphWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        runtime.current().__dict__["graph_for"] = _graph_client   # what Runtime(graph_for=...) sets
        rounds.PAGE_SIZE = int(os.environ.get("CALSYNC_TEST_PAGE_SIZE", rounds.PAGE_SIZE))   # the work horse's too

    def perform_job(self, job, queue, execution) -> bool:
        Path(os.environ["CALSYNC_TEST_HORSE_PID"]).write_text(str(os.getpid()))
        return super().perform_job(job, queue, execution)
