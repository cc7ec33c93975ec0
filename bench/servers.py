"""Servers the benchmark starts for itself and always stops: a SecantusDB wire server and the emulator."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness.loopback import free_port
from harness.secantus import MongoServer
from harness.secantus import start_secantus as _start_secantus
from harness.waiting import wait_until


def start_secantus(directory: Path) -> MongoServer:
    """The suite's SecantusDB starter, outside our process group (the bench signals groups)."""
    return _start_secantus(directory, own_session=True)


@dataclass
class EmulatorProcess:
    """``calsync emulator`` as its own process (as Graph is: its work never competes with the bench's GIL)."""

    base_url: str
    ca_bundle: str
    control: object

    @property
    def graph_url(self) -> str:
        return self.base_url + "/v1.0"

    @property
    def authority_host(self) -> str:
        return self.base_url


def start_emulator(procs, directory: Path, env: dict) -> EmulatorProcess:
    from emulator.app import DEFAULT_CONTROL_SECRET
    from emulator.testing import ControlClient

    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    procs.start("emulator", [sys.executable, "-c", "from service.cli import main; main()", "emulator", "--port",
                             str(port), "--directory", str(directory)], env)
    from bench.common import wait_port

    wait_port(port, timeout=60)
    ca = directory / "ca.pem"
    wait_until(ca.exists, timeout=30, message=f"the emulator's CA at {ca}")
    base = f"https://127.0.0.1:{port}"
    return EmulatorProcess(base, str(ca), ControlClient(base, DEFAULT_CONTROL_SECRET, str(ca)))
