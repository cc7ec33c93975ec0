"""An ``rq worker`` class for the crash-safety test: calsync's worker, with Graph routed to the loopback fake.

The store is the test's own database on the MongoDB wire server (``MONGODB_URI``), shared with the test
process as production workers share theirs. Used as ``rq worker -w tests.support.fake_graph_worker.FakeGraphWorker``.
"""

from __future__ import annotations

import os
from pathlib import Path

import requests

from service import runtime
from service.graph import GraphClient
from service.workers.worker import Worker


def _graph_client(user_id: str) -> GraphClient:
    session = requests.Session()
    session.trust_env = False
    return GraphClient(session, os.environ["CALSYNC_TEST_GRAPH_URL"],
                       token=lambda force_refresh=False: f"tok-{user_id}", timeout=5)


class FakeGraphWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        runtime.current().__dict__["graph_for"] = _graph_client   # what Runtime(graph_for=...) sets

    def perform_job(self, job, queue, execution) -> bool:
        Path(os.environ["CALSYNC_TEST_HORSE_PID"]).write_text(str(os.getpid()))
        return super().perform_job(job, queue, execution)
