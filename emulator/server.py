"""Serve the emulator over HTTPS on loopback with werkzeug (threaded), for tests and `calsync emulator`."""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from emulator.app import DEFAULT_CONTROL_SECRET, Emulator, create_app
from emulator.tls import TlsFiles, make_tls_files

log = logging.getLogger(__name__)


class QuietHandler(WSGIRequestHandler):
    """Request lines go to the debug log, not stderr (URLs can carry tokens)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("emulator: %s %s", self.command, code)


class ServerThread:
    """A werkzeug server running in a daemon thread; ``stop()`` shuts it down."""

    def __init__(self, emulator: Emulator, tls: TlsFiles, host: str = "127.0.0.1", port: int = 0):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(tls.cert_pem), str(tls.key_pem))
        self.emulator = emulator
        self.tls = tls
        self.server: BaseWSGIServer = make_server(host, port, create_app(emulator), threaded=True,
                                                  ssl_context=context, request_handler=QuietHandler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        host_part = f"[{host}]" if ":" in host else host
        self.base_url = f"https://{host_part}:{self.port}"
        emulator.base_url = self.base_url
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       name="emulator-http", daemon=True)

    def start(self) -> ServerThread:
        self.emulator.start()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()
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
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()
        emulator.stop()
