# ipseclab: `make test` sets up everything the tests need and runs them (the README's test command).
.PHONY: setup test lint unit bench interop clean

PY ?= .venv/bin/python

setup:
	./scripts/setup.sh

lint: setup
	$(PY) -m ruff check ipseclab tests testcases conftest.py examples
	$(PY) -m mypy ipseclab

test: setup
	./scripts/test.sh

unit:
	$(PY) -m pytest tests/unit -q

# the main job (root): build the peer images if needed, run every test case both ways, print the matrix
interop: setup
	.venv/bin/ipseclab interop --jobs auto

bench: setup
	$(PY) -m tests.bench.bench_ike_codec
	$(PY) -m tests.bench.bench_esp
	$(PY) -m tests.bench.bench_ike_engine

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis
