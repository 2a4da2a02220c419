#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs everything it needs, starts the real
# services from the test fixtures (Kafka broker, MLServer, embeddings server), lints, tests.
# Extra arguments go to pytest (for example: bash scripts/test.sh tests/unit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
echo "== chromium for the /inference/ page's browser test (Playwright drives it via executable_path)"
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
echo "== services: Kafka jars, MLServer and embeddings virtualenvs, the example model"
.venv/bin/python -m devtools.kafka fetch
.venv/bin/python -m devtools.kafka fetch --version 4.1.1
.venv/bin/python -m devtools.mlserver setup >/dev/null
.venv/bin/python -m examples.personalization.run --prepare-only >/dev/null
.venv/bin/python -m examples.predictive_maintenance.run --prepare-only >/dev/null
.venv/bin/python -m devtools.embeddings setup >/dev/null
.venv/bin/python -m devtools.llm setup >/dev/null
echo "== lint and types"
.venv/bin/ruff check faust_inference tests examples benchmarks devtools
.venv/bin/mypy faust_inference devtools
echo "== docs"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -d "$(mktemp -d)"
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
echo "== Flink SQL ML_PREDICT vs faust-inference, smoke run (PyFlink venv and Flink jars first)"
.venv/bin/python -m benchmarks.flink.install >/dev/null
.venv/bin/python benchmarks/flink/run.py --smoke
echo "== the Kafka-facing integration tests again, on Kafka 4.x (KIP-896 removed old protocol versions)"
FAUST_INFERENCE_KAFKA_VERSION=4.1.1 .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/integration/test_stream.py tests/integration/test_crash.py tests/integration/test_scale_out.py
echo "== the whole suite on Kafka 3.9"
.venv/bin/python -m pytest -q -p no:cacheprovider
