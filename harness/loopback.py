"""Loopback ports and the server processes the suite and the bench start: ``free_port()``, ``stop_process()``."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM a server process the suite started and wait for it; SIGKILL it if it does not exit in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class Deferred:
    """A WSGI app filled in after the server is bound (so the app can know its own URL)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)
