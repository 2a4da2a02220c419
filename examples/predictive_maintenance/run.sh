#!/usr/bin/env bash
# One command for the predictive-maintenance example on a fresh machine: installs the
# project, then starts Kafka, MLServer (the anomaly detector), the Faust worker and a
# replay of pump sensor readings, and prints maintenance alerts. Arguments go to run.py
# (for example: --pumps 12 --faulty 1,4,9 --minutes 30).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/venv.sh
exec .venv/bin/python -m examples.predictive_maintenance.run "$@"
