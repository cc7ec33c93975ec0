"""A SecantusDB wire server as its own process (GPL, beta: never imported, only run), for the suite's
session fixture and for ``python -m bench``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pymongo

from harness.loopback import free_port, stop_process
from harness.waiting import wait_until


@dataclass
class MongoServer:
    """A MongoDB wire server: ``uri`` has no database; ``process`` (None for a server we did not start) is ours."""

    uri: str
    process: subprocess.Popen | None = None

    def database_uri(self, name: str) -> str:
        return f"{self.uri.rstrip('/')}/{name}"

    def stop(self) -> None:
        stop_process(self.process)


def start_secantus(directory: Path, own_session: bool = False) -> MongoServer:
    """SecantusDB on a free loopback port, storage under ``directory`` (its log there too). ``own_session``
    keeps it out of the caller's process group (the bench signals groups)."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    port = free_port()
    with open(directory / "secantusd.log", "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(port),
             "--storage-path", str(directory / "data"), "--standalone", "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=own_session,
        )
    uri = f"mongodb://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, "secantusd-py exited"
        try:
            with pymongo.MongoClient(uri, serverSelectionTimeoutMS=200) as client:
                client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False

    try:
        wait_until(answers, timeout=30, message="secantusd-py to answer")
    except AssertionError as exc:
        process.kill()
        raise RuntimeError(f"secantusd-py did not start ({exc}); see {directory / 'secantusd.log'}") from None
    return MongoServer(uri, process)
