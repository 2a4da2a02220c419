#!/usr/bin/env bash
# One command for the personalization example on a fresh machine: installs the project,
# then starts Kafka, MLServer (the ranker), the Faust worker and a producer of shopper
# events, and prints suggestions. Arguments go to run.py (for example: --count 2000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/venv.sh
exec .venv/bin/python -m examples.personalization.run "$@"
