"""``calsync dev`` without MONGODB_URI: web, worker and scheduler as threads of one process sharing one Runtime.

This is how the embedded in-memory MongoDB is shared: the Procfile runs the same three parts as
separate processes when MONGODB_URI points at a real server.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from werkzeug.serving import make_server

from service import store
from service.app import create_app
from service.recovery import redis_loss
from service.runtime import Runtime, install
from service.sync import dispatch
from service.workers.inprocess import InProcessWorker, scheduled_forever
from service.workers.scheduler import Scheduler

log = logging.getLogger(__name__)


class DevServer:
    def __init__(self, runtime: Runtime, host: str = "127.0.0.1", port: int = 8000, scheduler: bool = True):
        self.runtime = runtime
        self.app = create_app(runtime=runtime)
        self.http = make_server(host, port, self.app, threaded=True)
        self.port = self.http.server_port
        self.stop_event = threading.Event()
        self.with_scheduler = scheduler
        self.threads: list[threading.Thread] = []
        self.worker: InProcessWorker | None = None

    def start(self) -> None:
        store.init_db(self.runtime.db)
        install(self.runtime)  # the worker thread's jobs use this process's one Runtime
        redis_conn = self.runtime.redis
        self.worker = InProcessWorker(redis_conn, self.stop_event)
        parts = [
            ("web", self.http.serve_forever),
            ("worker", self.worker.run),
            ("rq-scheduled", lambda: scheduled_forever(redis_conn, self.stop_event)),
            ("dispatcher", lambda: dispatch.run(redis_conn, self.stop_event)),
        ]
        if self.with_scheduler:
            watch = redis_loss.watch(self.runtime.db, redis_conn).check   # an emptied Redis is rebuilt
            parts.append(("scheduler", lambda: Scheduler(redis_conn, watch=watch).run(self.stop_event, interval=2.0)))
        for name, target in parts:
            thread = threading.Thread(target=target, name=f"calsync-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self, within: float = 8.0) -> None:
        """Stop every part, waiting ``within`` seconds in all (a job still running is left to its daemon thread)."""
        self.stop_event.set()
        if self.worker is not None:
            self.worker.stop()
        self.http.shutdown()
        deadline = time.monotonic() + within
        for thread in self.threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        left = [thread.name for thread in self.threads if thread.is_alive()]
        if left:
            job = self.worker.abandon() if self.worker is not None and "calsync-worker" in left else None
            log.warning("calsync dev stopped with %s still running%s", ", ".join(left),
                        f" (job {job})" if job else "")
        else:
            log.info("calsync dev stopped")


def stop_on_signals() -> threading.Event:
    """An Event that SIGINT (Ctrl-C) or SIGTERM sets; call from the main thread."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def wait_until_set(stop: threading.Event, slice_seconds: float = 0.5) -> None:
    """Block the main thread until ``stop`` is set, in short slices.

    Never with one untimed ``stop.wait()``: the kernel hands a process-wide signal to any thread that does not
    block it, and Python runs the handler in the main thread only when that thread next runs Python code. A
    main thread parked in an untimed lock wait never does, so a Ctrl-C that landed on a worker thread was lost.
    """
    while not stop.wait(slice_seconds):
        pass
