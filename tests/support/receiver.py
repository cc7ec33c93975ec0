"""A real webhook receiver on loopback for the outbound tests: records every request (headers and body) and
answers as told (a status per request, a delay, an enormous body, no HTTP at all)."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness.waiting import wait_until


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)   # answered in turn; then 204
    delay: float = 0.0
    huge_body: int = 0          # bytes of body after a 200
    garbage: int = 0            # bytes of non-HTTP noise instead of a response
    requests: list[Received] = field(default_factory=list)
    answered: list[tuple[str, int]] = field(default_factory=list)   # (webhook-id, status sent), in order

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The requests received, once there are ``count`` (AssertionError after ``timeout`` seconds)."""
        wait_until(lambda: len(self.requests) >= count, timeout=timeout, interval=0.02,
                   message=f"{count} requests at the receiver")
        return self.requests


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if receiver.delay:
                time.sleep(receiver.delay)
            try:
                if receiver.garbage:
                    self.wfile.write(b"x" * receiver.garbage)
                    return
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                receiver.answered.append((self.headers.get("webhook-id", ""), status))
                self.send_response(status)
                self.send_header("Content-Length", str(receiver.huge_body))
                self.end_headers()
                chunk = b"y" * 65536
                sent = 0
                while sent < receiver.huge_body:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass   # the sender stopped reading, as it should

        def log_message(self, *args):
            pass

    return Handler


@contextlib.contextmanager
def running_receiver(path: str = "/hooks/calsync", tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """Served over HTTPS when given a server-side ``tls`` context."""
    receiver = Receiver("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    receiver.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_port}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
