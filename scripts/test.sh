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
    # as root with no arguments, in four runs (2026-12-01, 2 cores, no AMX: 20 min one test at a time before,
    # 9-11 min now for the first three):
    # 1. the unit tests, two workers (CPU-bound: 78 s);
    # 2. the interop tests that start labs of their own and look only at their own resources, three workers
    #    (they mostly wait on guests: 5 min against 11.5 min one at a time; the kernel cross-check boots one
    #    kernel peer per worker);
    # 3. those that look for leftovers of any lab or container on the machine (teardown, the Docker runtime,
    #    the remote engine), one at a time, after the parallel ones;
    # 4. the matrix, cells in parallel: each worker takes whole groups of a pair's cells (tests/interop/conftest.py:
    #    MatrixScheduling) and keeps the pair's peers booted between them; one worker a core computes, three more
    #    take the lifecycle cells, which mostly wait on the daemons' timers (2 cores: 2:33, median cell 1.2 s)
    $PY -m pytest tests/unit -n 2
    # the interop tests use no Hypothesis: its pytest plugin took ~1 CPU-s of every worker's collection
    NOHYP=(-p no:hypothesispytest)
    SERIAL=(tests/interop/test_docker_runtime.py tests/interop/test_remote_engine.py tests/interop/test_teardown.py)
    $PY -m pytest "${NOHYP[@]}" tests/interop -n 3 --durations=15 --ignore=tests/interop/test_matrix.py \
        "${SERIAL[@]/#/--ignore=}"
    $PY -m pytest "${NOHYP[@]}" "${SERIAL[@]}"
    echo "== the interop matrix (tests/interop/test_matrix.py, ${MATRIX_WORKERS:=$(( $(nproc) + 3 ))} workers)"
    $PY -m pytest "${NOHYP[@]}" tests/interop/test_matrix.py -n "$MATRIX_WORKERS" -q -rs
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
