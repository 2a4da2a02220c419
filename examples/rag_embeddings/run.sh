#!/usr/bin/env bash
# One command for the RAG-embeddings example on a fresh machine: installs the project (the
# venv gets the examples extra: the vector store), then starts Kafka, the embeddings server,
# the Faust worker and a producer, and asks the product index a few questions.
# Arguments go to run.py (for example: --products 500 --ask "a tent for a windy beach").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/venv.sh
exec .venv/bin/python -m examples.rag_embeddings.run "$@"
