"""One asyncio event loop per process, in a thread of its own, and the aiohttp sessions the channels' clients
use on it (the Agents SDK's ``ConnectorClient`` for Teams, ``slack_sdk``'s ``AsyncWebClient`` for Slack).

A session keeps its connections, and their TLS sessions, alive from one message to the next, as the requests
session to Graph does; a worker used to start an event loop, a session and a TLS handshake for every message
(bench P12). Calls come from the worker's own threads: ``run`` hands a coroutine to the loop and waits for it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable

import aiohttp


class Connections:
    def __init__(self):
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._sessions: dict[tuple, tuple[aiohttp.ClientSession, asyncio.Lock]] = {}

    def run(self, call: Callable[[aiohttp.ClientSession, asyncio.Lock], Awaitable], ssl_context, timeout: float,
            base_url: str | None = None):
        """``await call(session, lock)`` on the loop, with the session for (``base_url``, ``ssl_context``,
        ``timeout``) and a lock of that session's own; returns its result or raises its exception."""
        async def on_the_loop():
            session, lock = self._session(base_url, ssl_context, timeout)
            return await call(session, lock)

        return asyncio.run_coroutine_threadsafe(on_the_loop(), self._running_loop()).result(timeout + 5)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():     # a forked child starts its own
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="channel-connections", daemon=True).start()
                if self._loop is None:
                    atexit.register(self.close)
                self._loop, self._pid, self._sessions = loop, os.getpid(), {}
            return self._loop

    def _session(self, base_url: str | None, ssl_context, timeout: float):
        key = (base_url, id(ssl_context), timeout)      # the session's connector keeps the context alive
        found = self._sessions.get(key)
        if found is None or found[0].closed:
            found = self._sessions[key] = (aiohttp.ClientSession(
                base_url=base_url, connector=aiohttp.TCPConnector(ssl=ssl_context),
                timeout=aiohttp.ClientTimeout(total=timeout)), asyncio.Lock())
        return found

    def close(self) -> None:
        """Close the sessions (at exit, so that their connections are not reported as leaked)."""
        with self._lock:
            loop, sessions, self._sessions = self._loop, list(self._sessions.values()), {}
        if loop is None or self._pid != os.getpid() or not loop.is_running():
            return

        async def close_all() -> None:
            for session, _ in sessions:
                await session.close()

        with contextlib.suppress(Exception):   # at exit: nothing left to tell
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(5)


_connections = Connections()
run = _connections.run
