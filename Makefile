# The two commands a newcomer needs (see README): `make demo` and `make test`.
PYTHON ?= python3

.PHONY: demo test install lint

install:
	$(PYTHON) -m pip install -q -e .

demo: install
	calsync demo

test:
	bash scripts/install-test-deps.sh
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
