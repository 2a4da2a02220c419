#!/usr/bin/env bash
# One command for the RAG-embeddings example on a fresh machine: installs the project (with
# the example's vector store), then starts Kafka, the embeddings server, the Faust worker and
# a producer, and asks the product index a few questions.
# Arguments go to run.py (for example: --products 500 --ask "a tent for a windy beach").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/venv.sh
.venv/bin/python -m pip install -q -e ".[examples]"
exec .venv/bin/python -m examples.rag_embeddings.run "$@"
