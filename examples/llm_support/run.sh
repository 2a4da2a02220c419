#!/usr/bin/env bash
# One command for the LLM customer-support example on a fresh machine: installs the project,
# starts Kafka, a small chat model (SmolLM2-135M on llama-cpp-python, compiled once into
# .cache/: a few minutes) or uses the endpoint you give, then the Faust worker and a producer.
# Arguments go to run.py, for example:
#   bash examples/llm_support/run.sh --count 20
#   OPENAI_API_KEY=... bash examples/llm_support/run.sh --endpoint https://api.openai.com/v1 --model gpt-4o-mini
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/venv.sh
exec .venv/bin/python -m examples.llm_support.run "$@"
