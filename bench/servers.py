"""Servers the benchmark starts for itself and always stops: a SecantusDB wire server and the emulator."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pymongo

from bench.common import free_port


@dataclass
class Mongo:
    uri: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_secantus(directory: Path) -> Mongo:
    """SecantusDB (GPL, beta: run as a process, never imported) on a free loopback port."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    port = free_port()
    with open(directory / "secantusd.log", "wb") as log:
        process = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                                    str(directory / "data"), "--standalone", "--log-level", "WARNING"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"mongodb://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with pymongo.MongoClient(uri, serverSelectionTimeoutMS=200) as client:
                client.admin.command("ping")
            return Mongo(uri, process)
        except pymongo.errors.PyMongoError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"secantusd-py did not start; see {directory / 'secantusd.log'}") from None
            time.sleep(0.05)


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
    deadline = time.monotonic() + 30
    while not ca.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"https://127.0.0.1:{port}"
    return EmulatorProcess(base, str(ca), ControlClient(base, DEFAULT_CONTROL_SECRET, str(ca)))
