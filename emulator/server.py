"""Serve the emulator over HTTPS on loopback, for tests and `calsync emulator`.

The server is cheroot (CherryPy's WSGI server): HTTP/1.1 with keep-alive, as Graph and the identity
platform serve. werkzeug's development server, used before, answers every request with
``Connection: close``, so each Graph call of a sync job paid a new TCP and TLS handshake that it never pays
against Graph (bench P3 measured that as most of a job).
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
from pathlib import Path

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from emulator.app import DEFAULT_CONTROL_SECRET, Emulator, create_app
from emulator.tls import TlsFiles, make_tls_files

log = logging.getLogger(__name__)

THREADS = 32          # requests in progress at once; idle keep-alive connections hold no thread
IDLE_SECONDS = 30     # a keep-alive connection with no request for this long is closed


def _error_log(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    log.log(level, "emulator http: %s", msg, exc_info=traceback)


def _server(emulator: Emulator, tls: TlsFiles, host: str, port: int) -> wsgi.Server:
    server = wsgi.Server((host, port), create_app(emulator), numthreads=THREADS, server_name="graph-emulator",
                         timeout=IDLE_SECONDS, shutdown_timeout=2)
    adapter = BuiltinSSLAdapter(str(tls.cert_pem), str(tls.key_pem))
    adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
    server.ssl_adapter = adapter
    server.error_log = _error_log   # cheroot's default writes to stderr
    server.prepare()      # binds now, so port 0 has become a real port before anyone asks
    return server


class ServerThread:
    """The emulator's HTTPS server running in a daemon thread; ``stop()`` shuts it down."""

    def __init__(self, emulator: Emulator, tls: TlsFiles, host: str = "127.0.0.1", port: int = 0):
        self.emulator = emulator
        self.tls = tls
        self.server = _server(emulator, tls, host, port)
        self.port = self.server.bind_addr[1]
        host_part = f"[{host}]" if ":" in host else host
        self.base_url = f"https://{host_part}:{self.port}"
        emulator.base_url = self.base_url
        self.thread = threading.Thread(target=self.server.serve, name="emulator-http", daemon=True)

    def start(self) -> ServerThread:
        self.emulator.start()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=5)
        self.emulator.stop()


def main(port: int = 8443, host: str = "127.0.0.1", directory: str | Path | None = None,
         control_secret: str = DEFAULT_CONTROL_SECRET, seed: int = 0, time_scale: float = 1.0) -> None:
    """Run the emulator in the foreground until interrupted (the `calsync emulator` command)."""
    directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="calsync-emulator-"))
    tls = make_tls_files(directory)
    emulator = Emulator(control_secret=control_secret, seed=seed, time_scale=time_scale)
    server = ServerThread(emulator, tls, host, port)
    emulator.start()
    print(f"emulator: {server.base_url}  (CA bundle: {tls.ca_pem})", flush=True)  # noqa: T201
    print(f"  CALSYNC_GRAPH_URL={server.base_url}/v1.0", flush=True)  # noqa: T201
    print(f"  CALSYNC_AUTHORITY_HOST={server.base_url}", flush=True)  # noqa: T201
    print(f"  CALSYNC_CA_BUNDLE={tls.ca_pem}", flush=True)  # noqa: T201
    try:
        server.server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.stop()
        emulator.stop()
