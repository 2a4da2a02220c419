#!/usr/bin/env bash
# One command for the fraud-detection example on a fresh machine: installs the project,
# then starts Kafka, MLServer, the Faust worker and a producer, and prints scores.
# Arguments go to run.py (for example: --count 2000 --rate 300).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/venv.sh
exec .venv/bin/python -m examples.fraud_detection.run "$@"
