# The two commands a newcomer needs (see README): `make demo` and `make test`.
PYTHON ?= python3

.PHONY: demo test install lint

install:
	$(PYTHON) -m pip install -q -e .

demo: install
	calsync demo

# The whole suite on a SecantusDB wire server, then the store, webhook and sync tests on mongomock too.
test:
	bash scripts/install-test-deps.sh
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q -n 3
	CALSYNC_TEST_MONGO=mongomock $(PYTHON) -m pytest -q -n 3 tests/store tests/webhooks tests/sync tests/workers

lint:
	$(PYTHON) -m ruff check .
