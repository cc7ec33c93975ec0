#!/usr/bin/env bash
# The in-process suite on the instants where dates go wrong (README, "Tests"): a Saturday, a Sunday, the
# autumn DST change in New York and in Europe, the last half hour of a year, and a minute before midnight.
# Each run moves the test process's clock with time-machine (CALSYNC_TEST_NOW, tests/conftest.py); the
# multi-process suites (marked slow) choose their users' days and zones instead and are left out here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
instants=(
  "2026-11-28T12:00:00+00:00"   # Saturday noon
  "2026-11-29T07:00:00+00:00"   # Sunday morning
  "2026-11-01T05:30:00+00:00"   # New York, 01:30 EDT: the hour that repeats comes next
  "2026-10-25T00:30:00+00:00"   # Europe, 02:30 CEST: the clocks go back at 01:00 UTC
  "2026-12-31T23:30:00+00:00"   # the last half hour of the year (UTC)
  "2026-12-02T23:59:00+00:00"   # a weekday, a minute before midnight
)
failed=0
for when in "${instants[@]}"; do
  echo "== CALSYNC_TEST_NOW=$when"
  CALSYNC_TEST_NOW="$when" CALSYNC_TEST_MONGO=mongomock $PYTHON -m pytest -q -n 3 -m "not slow" "$@" \
    2>&1 | tail -15 || failed=1
done
exit $failed
