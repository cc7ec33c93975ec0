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
