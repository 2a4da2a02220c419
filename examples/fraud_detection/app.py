"""Score card transactions for fraud with a scikit-learn model served by MLServer.

Run it as any Faust app::

    KAFKA_BROKER=kafka://127.0.0.1:9092 FRAUD_MODEL_URL=http://127.0.0.1:8080 \
        faust -A examples.fraud_detection.app worker -l info

Each transaction is sent to the model over the Open Inference Protocol (V2),
in micro-batches of up to 16 rows with at most 32 requests in flight; scores
go to ``scores`` and those above ``FRAUD_THRESHOLD`` also to ``alerts``.
Transactions the model cannot score (bad features, server down after all
retries) land in ``transactions.dlq`` with the reason.

Calls are kept under 200 requests/s (less if MLServer answers 429), a circuit
breaker pauses the stream while MLServer is down, a drift monitor compares
each minute of amounts and scores with the training data (alerts go to
``fraud.drift``), and every metric is served on the Faust web server at
``http://127.0.0.1:$FRAUD_WEB_PORT/metrics`` (default port 6066).
"""

from __future__ import annotations

import os

import faust

from examples.fraud_detection.train import make_transactions
from faust_inference import DriftMonitor, Price, infer, install
from faust_inference.sensors import prometheus

app = faust.App(
    os.environ.get("FRAUD_APP_ID", "fraud-detection"),
    broker=os.environ.get("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    topic_partitions=4,
    web_enabled=True,
    web_port=int(os.environ.get("FRAUD_WEB_PORT", "6066")),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
)
# Serve /metrics even when the worker is started with --without-web (as
# devtools.FaustWorker does): the metrics are what the web server is for here.
app.boot_strategy.enable_web = True
install(app)
prometheus.setup(app, prices={"fraud": Price(per_request=0.00001)})

THRESHOLD = float(os.environ.get("FRAUD_THRESHOLD", "0.5"))


class Transaction(faust.Record, serializer="json"):
    id: str
    card_id: str
    amount: float
    features: list[float]


fraud = app.model(
    "fraud",
    provider="kserve",  # Open Inference Protocol V2: MLServer, KServe, Triton
    endpoint=os.environ.get("FRAUD_MODEL_URL", "http://127.0.0.1:8080"),
    remote_name="fraud",
    version="v1",
    task="classification",
    input_name="features",
    shape=[10],  # one row of 10 features; other shapes are rejected before sending
    max_concurrency=32,
    batch_size=16,
    batch_timeout=0.01,
    timeout=2.0,
    retries=3,
    rate_limit=200,  # requests/s for this worker; cut on 429, then recovered
    circuit_breaker={"failures": 5, "reset_timeout": 5.0},  # wait while MLServer is down
)
if os.environ.get("FRAUD_MODEL_V2_URL"):
    # A second version, for the lifecycle walk-through in README.md: MLServer's
    # latest version of the model (no version in the path) stands in for a retrained one.
    from faust_inference import web

    fraud.add_version("v2", endpoint=os.environ["FRAUD_MODEL_V2_URL"], version_in_path=False)
    web.setup(app)  # /inference/; changes need FAUST_INFERENCE_WEB_TOKEN


@fraud.preprocess
def to_input(tx: Transaction) -> list[float]:
    return tx.features


_training_rows, _ = make_transactions(5000, seed=42)
drift = DriftMonitor(
    app,
    fraud,
    features={"amount": lambda tx: tx.amount},
    output=lambda out: out[1],  # p(fraud)
    reference={"amount": [round(2.718281828 ** row[0] - 1, 2) for row in _training_rows]},
    bins={"output": [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9]},
    window=60.0,
    alerts="fraud.drift",
)

transactions = app.topic("transactions", value_type=Transaction)
scores = app.topic("scores", value_serializer="json")
alerts = app.topic("alerts", value_serializer="json")


@app.agent(transactions)
@infer(fraud, dead_letter="transactions.dlq")
async def score(results):  # type: ignore[no-untyped-def]
    async for r in results:
        drift.observe(r)
        p_fraud = r.output[1]
        verdict = {
            "id": r.event.id,
            "card_id": r.event.card_id,
            "amount": r.event.amount,
            "p_fraud": round(p_fraud, 4),
            "model": r.model,
            "version": r.version,
            "latency_ms": round(r.latency_s * 1000, 2),
        }
        await scores.send(key=r.event.id, value=verdict)
        if p_fraud > THRESHOLD:
            await alerts.send(key=r.event.card_id, value=verdict)
