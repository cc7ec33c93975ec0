"""What the suite's own servers share: the operators' token the test settings carry, and a WSGI app that
is filled in after its server is bound (the app's settings need the port)."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from werkzeug.serving import make_server

from harness.loopback import Deferred
from service.app import create_app
from service.runtime import Runtime

OPS_TOKEN = "test-ops-token-0123456789abcdef"


@contextmanager
def served_app(make_settings, db, redis_conn, **overrides):
    """calsync on a real loopback port, its public URL pointing at it (so signed links resolve): yields
    (runtime, base URL); stops the server afterwards."""
    holder = Deferred()
    server = make_server("127.0.0.1", 0, holder, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    rt = Runtime(make_settings(public_url=url, **overrides), db=db, redis_conn=redis_conn)
    holder.app = create_app(runtime=rt)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rt, url
    finally:
        server.shutdown()
        thread.join(timeout=5)
