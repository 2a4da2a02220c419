#!/usr/bin/env bash
# Create (or update) the project's virtualenv in .venv with the package in editable mode.
# Sourced by scripts/test.sh and examples/fraud_detection/run.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test,lint,aws,gcp,azure,prometheus,grpc,examples,docs,bench]"
