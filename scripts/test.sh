#!/usr/bin/env bash
# Lint, type-check and run the test suite (unit, tshark and, as root with the lab, interop).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
echo "== ruff"
$PY -m ruff check ipseclab tests testcases conftest.py
echo "== mypy"
$PY -m mypy ipseclab
echo "== pytest"
$PY -m pytest "$@"
