"""`emulator.server.main` (what `calsync emulator --port N` runs) serves HTTPS with its own CA."""

from __future__ import annotations

import subprocess
import sys

import requests


def test_main_serves_https_until_terminated(tmp_path):
    code = f"from emulator.server import main; main(port=0, directory={str(tmp_path)!r}, control_secret='s3cret')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("emulator: https://127.0.0.1:")
        base = first.split()[1]
        session = requests.Session()
        session.trust_env = False
        health = session.get(f"{base}/_emulator/health", headers={"Authorization": "Bearer s3cret"},
                             verify=str(tmp_path / "ca.pem"), timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        discovery = session.get(f"{base}/common/v2.0/.well-known/openid-configuration",
                                verify=str(tmp_path / "ca.pem"), timeout=10)
        assert discovery.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
