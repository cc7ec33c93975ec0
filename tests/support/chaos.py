"""Parts the chaos suites break on purpose: a persistent redis-server of their own (killed and restarted
with its data kept), a TCP proxy that cuts one process's MongoDB, and a platform-like supervisor.

    redis = RedisServer(tmp / "redis")        # appendonly, fsync always: a SIGKILL loses nothing acknowledged
    redis.kill(); redis.start()                # crash and come back on the same port with the same data
    redis.kill(); redis.wipe(); redis.start()  # crash and come back empty
    proxy = TcpProxy(("127.0.0.1", 27017))     # point one process's MONGODB_URI at proxy.port
    proxy.cut(); proxy.restore()               # every connection dropped and refused; then served again
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import redis

from harness.loopback import free_port, stop_process
from harness.topology import Topology
from harness.waiting import wait_until

# The profile: CALSYNC_CHAOS=long runs the full sizes; the default is a short one.
LONG = os.environ.get("CALSYNC_CHAOS") == "long"
USERS = 50 if LONG else 3
CHANGES = 5000 if LONG else 240
KILL_EVERY = 30.0 if LONG else 3.0
STORM_SECONDS = 30.0 if LONG else 3.0   # a 429 storm lasts at least this long


class RedisServer:
    """A redis-server on a fixed free port with an append-only file, so a restart keeps its data."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT)

        def answers() -> bool:
            assert self.process.poll() is None, f"redis-server exited: {self.directory / 'redis.log'}"
            try:
                return redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
            except redis.RedisError:
                return False

        wait_until(answers, timeout=20, message=f"redis-server to start ({self.directory / 'redis.log'})")

    def wipe(self) -> None:
        """Forget everything on disk (call while stopped): the next start comes back empty, as a Redis without
        persistence, or a failover to an empty replica, would."""
        for path in self.directory.iterdir():
            if path.name != "redis.log":
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def kill(self) -> None:
        """SIGKILL, as a crash would; what was acknowledged is in the append-only file."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.restarts += 1

    def stop(self) -> None:
        stop_process(self.process)


class TcpProxy:
    """A loopback TCP proxy to ``upstream`` that can drop every connection and refuse new ones for a while."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.refused = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            for sock in list(self.sockets):
                _close(sock)
            self.sockets.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        _close(self.listener)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                self.refused += 1
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            with self.lock:
                self.sockets.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                _close(sock)
                with self.lock:
                    self.sockets.discard(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Supervisor:
    """What a platform does for the Procfile: start each kind with its environment, restart what died."""

    def __init__(self, topology: Topology, envs: dict[str, dict[str, str]]):
        self.topology, self.envs = topology, envs
        self.next_index: dict[str, int] = {}
        self.restarted = 0
        self.killed = 0

    def start(self, kind: str) -> str:
        index = self.next_index.get(kind, 0) + 1
        self.next_index[kind] = index
        self.topology.env = self.envs[kind]
        self.topology.start(kind, index)
        return f"{kind}.{index}"

    def names(self, kind: str) -> list[str]:
        return [name for name in self.topology.running if name.startswith(f"{kind}.")]

    def kill(self, name: str) -> str:
        """SIGKILL a process's whole group and start a replacement of the same kind."""
        self.topology.kill(name)
        self.killed += 1
        return self.start(name.split(".")[0])

    def revive(self) -> list[str]:
        """Restart every process that exited (a worker that lost Redis, say), as a platform would."""
        dead = [name for name, running in self.topology.running.items() if running.process.poll() is not None]
        for name in dead:
            self.topology.running.pop(name)
            self.start(name.split(".")[0])
        self.restarted += len(dead)
        return dead

