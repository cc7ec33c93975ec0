#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian machine: the project with its test extras, Debian's
# chromium for browser tests (test tools must never download a browser of their own), and redis-server,
# which the fixtures start themselves when nothing answers on 127.0.0.1:6379, and wrk, which the benchmark's
# smoke test (tests/bench) drives against gunicorn.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install -q -e '.[test]'
