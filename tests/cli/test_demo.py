import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_demo_runs_end_to_end_on_embedded_defaults(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MONGODB_URI", "REDIS_URL") and not k.startswith("CALSYNC_")}
    env["CALSYNC_DATA_DIR"] = str(tmp_path / "var")

    result = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "demo", "--port", "0", "--once"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )

    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "2 Graph subscriptions created" in out
    assert "Ana: backfill stored 9 events = emulator truth 9" in out
    assert "Ana: 10 stored vs 10 in Graph — identical" in out
    assert "stored documents holding an event body: 0" in out
    assert "sent; again: already-handled" in out
    assert list((tmp_path / "var" / "mail").glob("*.eml")), "the digest should be in the dev mail sink"
    assert "Traceback" not in result.stderr
