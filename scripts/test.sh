#!/usr/bin/env bash
# Lint, type-check and run the test suite (unit, tshark and, as root with the lab, interop).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
echo "== ruff"
$PY -m ruff check ipseclab tests testcases conftest.py examples
echo "== mypy"
$PY -m mypy ipseclab
echo "== pytest"
if [ $# -gt 0 ] || [ "$(id -u)" != 0 ]; then
    $PY -m pytest "$@"
else
    # as root with no arguments: everything but the matrix, then the matrix three cells at a time (the tests
    # that look for leftovers of any lab have run by then): on 2 cores, three workers took 8 min 41 s where
    # two took 11 min 30 s (2026-11-30; lifecycle cells mostly wait), every cell passing both times. Each
    # worker takes whole pairs (tests/interop/conftest.py: xdist loadgroup) and keeps a pair's peers booted
    # between its plain cells
    $PY -m pytest --ignore=tests/interop/test_matrix.py
    echo "== the interop matrix (tests/interop/test_matrix.py, 3 workers)"
    $PY -m pytest tests/interop/test_matrix.py -n 3 -q -rs
fi
if [ "$(id -u)" = 0 ]; then
    # the plugin as another project uses it: examples/ has no conftest; a couple of cells, one pair
    echo "== example project (examples/)"
    mkdir -p runs
    (cd examples && "../$PY" -m pytest -q -p no:cacheprovider -m interop --ipseclab-pair strongswan:libreswan \
        --ipseclab-keep --junitxml=../runs/examples-junit.xml)
    grep -q 'name="ipseclab_artifact"' runs/examples-junit.xml \
        || { echo "examples: the JUnit XML names no artifact (pcaps, key files)" >&2; exit 1; }
fi
