import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from service.cli.demo import DEMO_ZONE

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MONGODB_URI", "REDIS_URL") and not k.startswith("CALSYNC_")}
    env["CALSYNC_DATA_DIR"] = str(tmp_path / "var")
    return env


def _weekdays() -> set[int]:
    return {datetime.now(ZoneInfo(DEMO_ZONE)).weekday()}


def test_the_readme_demo_runs_end_to_end_on_embedded_defaults(tmp_path):
    days = _weekdays()
    result = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "demo", "--port", "0", "--once"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    days |= _weekdays()   # the demo's day, whichever side of its midnight the run fell on

    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "2 Graph subscriptions created" in out
    assert "Ana: backfill stored 9 events, as many as the emulator holds (9)" in out
    assert "Ben: backfill stored 1 event, as many" in out            # "1 event", never "1 events"
    assert "Ana: 10 events stored, 10 in Graph: identical" in out
    assert "stored documents holding an event body: 0" in out
    sent = "   sent; asked again: already handled" in out
    weekend = re.search(r"   none today: (Saturday|Sunday)s are not among Ana's digest days \(Mon to Fri\)", out)
    assert sent or weekend, out
    if days <= {0, 1, 2, 3, 4}:
        assert sent and list((tmp_path / "var" / "mail").glob("*.eml")), "the digest should be in the dev mail sink"
    elif days <= {5, 6}:
        assert weekend
    # Narration in words: no None, no ISO microseconds, times with their zone said once.
    narration = out.split("Look around")[0]
    assert "None" not in narration and not re.search(r"\d{2}:\d{2}:\d{2}\.\d+", narration)
    assert "   Quarterly planning: sent on Slack" in out and "   Pipeline review: sent on Microsoft Teams" in out
    assert "/_emulator/slack/messages" in out and "/_emulator/teams/activities" in out
    assert "6. What operators see (times in UTC)" in out
    assert re.search(r"expires \w{3} \d{1,2} \w{3}, \d\d:\d\d \(in 7 days\)", out)
    # Direct links to what it made, and the certificate explained once.
    for label in ("Ana's page:", "Ana's settings:", "A meeting dashboard:", "Ana's digest for today, as a page:",
                  "Operators:"):
        assert re.search(re.escape(label) + r"\s+http://127\.0\.0\.1:\d+/", out), label
    assert out.count("About the certificate warning") == 1 and "warns once" in out and "ca.pem" in out
    assert "Traceback" not in result.stderr


def test_ctrl_c_ends_the_demo_with_a_closing_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", "from service.cli import main; main()", "demo", "--port", "0"],
        cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Serving until Ctrl-C"):
                break
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)   # reaped, its pipes read and closed

    assert process.returncode == 0, "".join(lines)[-2000:] + rest + errors[-2000:]
    assert "Stopping calsync and the emulator... done." in rest
    assert "Traceback" not in errors
