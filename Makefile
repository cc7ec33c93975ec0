# The two commands a newcomer needs (see README): `make demo` and `make test`.
PYTHON ?= python3

.PHONY: demo test check-long install lint

install:
	$(PYTHON) -m pip install -q -e .

demo: install
	calsync demo

# The whole suite on a SecantusDB wire server, then the store, webhook and sync tests on mongomock too.
test:
	bash scripts/install-test-deps.sh
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q -n 3 --dist loadgroup
	CALSYNC_TEST_MONGO=mongomock $(PYTHON) -m pytest -q -n 3 --dist loadgroup tests/store tests/webhooks tests/sync tests/workers

# The long profiles, one after the other, with their figures (-s): 100,000 hostile requests, then the chaos
# suites at the issue's sizes (50 users, 5,000 changes, R1-R6) and the emptied-Redis run with 50 users.
# Hours, not minutes: not part of `make test`.
check-long:
	CALSYNC_FUZZ=long $(PYTHON) -m pytest -q -s -p no:xdist tests/hardening/test_no_5xx.py
	CALSYNC_CHAOS=long $(PYTHON) -m pytest -q -s -p no:xdist tests/chaos tests/recovery

lint:
	$(PYTHON) -m ruff check .
