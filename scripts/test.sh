#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs everything it needs, starts the real
# services from the test fixtures (Kafka brokers, MLServer, embeddings and LLM servers),
# lints, builds the docs, tests. Extra arguments go to pytest (bash scripts/test.sh tests/unit).
#
# Installs run side by side (they wait on the network and the disk; the one compile, the
# LLM server's, gets the CPU meanwhile), and pytest runs test files in 3 processes, each
# with its own broker and servers: the tests mostly wait for Kafka and model servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
mkdir -p .cache/logs
pids=()
background() {  # background NAME COMMAND...: run it, log to .cache/logs/NAME.log
  local name=$1
  shift
  ("$@" >".cache/logs/$name.log" 2>&1 || { echo "!! $name failed:"; tail -40 ".cache/logs/$name.log"; exit 1; }) &
  pids+=($!)
}
echo "== services, side by side: LLM server venv (a compile), Kafka jars, MLServer and the"
echo "   examples' models, embeddings venv, PyFlink venv and Flink jars, chromium"
background llm .venv/bin/python -m devtools.llm setup
# One Maven at a time: two runs on one local repository can trip over each other.
background maven bash -c ".venv/bin/python -m devtools.kafka fetch \
  && .venv/bin/python -m devtools.kafka fetch --version 4.1.1 \
  && .venv/bin/python -m benchmarks.flink.install"
background mlserver bash -c ".venv/bin/python -m devtools.mlserver setup \
  && .venv/bin/python -m examples.personalization.run --prepare-only \
  && .venv/bin/python -m examples.predictive_maintenance.run --prepare-only"
background embeddings .venv/bin/python -m devtools.embeddings setup
# The /inference/ page's browser test: Playwright drives Debian's chromium (executable_path).
background chromium bash -c "command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }"
echo "== lint, types, docs (while the services install)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy faust_inference devtools
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -d "$(mktemp -d)"
.venv/bin/python -m pytest -q -p no:cacheprovider --doctest-modules faust_inference
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || { echo "!! a service failed to install (logs in .cache/logs/)"; exit 1; }
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
echo "== Flink SQL ML_PREDICT vs faust-inference, smoke run"
.venv/bin/python benchmarks/flink/run.py --smoke
echo "== the Kafka-facing integration tests again, on Kafka 4.x (KIP-896 removed old protocol versions)"
FAUST_INFERENCE_KAFKA_VERSION=4.1.1 .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/integration/test_stream.py tests/integration/test_crash.py tests/integration/test_scale_out.py \
  tests/chaos/test_poison.py
echo "== the whole suite on Kafka 3.9, test files in 3 processes"
.venv/bin/python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile
