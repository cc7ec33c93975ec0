#!/usr/bin/env bash
# What `python -m bench` needs beyond the test extras: Debian's wrk (the HTTP load generator for P1, run as a
# separate process) and py-spy (the sampling profiler behind `python -m bench.profile_webhook`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
python3 -m pip install -q -e '.[test,bench]'
