"""Run the whole fraud-detection example on this machine with one command.

    python -m examples.fraud_detection.run [--count 500] [--rate 100]

Starts a real Kafka broker and MLServer (both installed into ``.cache/`` on
first use), trains and serves the model, starts the Faust worker with
``faust -A examples.fraud_detection.app worker``, sends transactions, and
prints each score as it arrives. Stops everything after ``--count`` events
have a verdict (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from devtools.kafka import KafkaBroker, ensure_jars
from devtools.mlserver import MLServer, ensure_venv, prepare_fraud_model
from devtools.worker import FaustWorker
from examples.fraud_detection.producer import produce, transaction_id

REPO = Path(__file__).resolve().parents[2]
SEED = 7
TOPICS = ("transactions", "scores", "alerts", "transactions.dlq")


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


async def watch(bootstrap: str, ids: set[str], deadline: float) -> tuple[int, int, int]:
    """Print verdicts until every id has one; returns (scored, alerts, dead letters)."""
    consumer = AIOKafkaConsumer(
        "scores",
        "alerts",
        "transactions.dlq",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    done: set[str] = set()
    n_alerts = n_dead = 0
    try:
        while len(done & ids) < len(ids) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    value = orjson.loads(record.value)
                    if tp.topic == "scores":
                        done.add(value["id"])
                        print(
                            f"  score  {value['id']}  p_fraud={value['p_fraud']:.3f}  "
                            f"({value['latency_ms']} ms)"
                        )
                    elif tp.topic == "alerts":
                        n_alerts += 1
                        print(
                            f"  ALERT  {value['id']}  card={value['card_id']}  "
                            f"amount={value['amount']}  p_fraud={value['p_fraud']:.3f}"
                        )
                    else:
                        n_dead += 1
                        done.add(value["event"]["id"])
                        print(
                            f"  DLQ    {value['event']['id']}  {value['error_class']}: "
                            f"{value['error'][:100]}"
                        )
    finally:
        await consumer.stop()
    return len(done & ids), n_alerts, n_dead


async def scenario(kafka: KafkaBroker, count: int, rate: float, timeout: float) -> int:
    """Send transactions and show verdicts at the same time, until every one has one."""
    ids = {transaction_id(SEED, i) for i in range(count)}
    deadline = time.monotonic() + timeout
    say(f"sending {count} transactions at {rate:g}/s; verdicts follow as they arrive")
    _, (verdicts, n_alerts, n_dead) = await asyncio.gather(
        produce(kafka.bootstrap, count, rate, seed=SEED),
        watch(kafka.bootstrap, ids, deadline),
    )
    say(
        f"{verdicts}/{len(ids)} transactions have a verdict "
        f"({n_alerts} alerts, {n_dead} in the dead-letter topic)"
    )
    return 0 if verdicts == len(ids) else 1


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the worker's web server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def show_metrics(port: int) -> None:
    """Print the worker's own counters, as Prometheus would scrape them."""
    import aiohttp

    wanted = (
        "faust_inference_requests_total",
        "faust_inference_events_total",
        "faust_inference_dead_letters_total",
        "faust_inference_estimated_cost_total",
    )
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    say("metrics (excerpt):")
    for line in text.splitlines():
        if line.startswith(wanted):
            print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="transactions to send")
    parser.add_argument("--rate", type=float, default=100.0, help="transactions per second")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for verdicts")
    args = parser.parse_args()

    say("preparing Kafka jars, the MLServer virtualenv and the model (first run: a few minutes)")
    ensure_jars()
    ensure_venv()
    models = prepare_fraud_model(REPO / ".cache" / "models")
    workdir = Path(tempfile.mkdtemp(prefix="fraud-example-"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with KafkaBroker() as kafka, MLServer(models) as server:
            say(f"Kafka at {kafka.bootstrap}, MLServer at {server.url}")
            for topic in TOPICS:
                kafka.create_topic(topic, partitions=4)
            port = free_port()
            env = {
                "KAFKA_BROKER": kafka.url,
                "FRAUD_MODEL_URL": server.url,
                "FRAUD_WEB_PORT": str(port),
            }
            worker = FaustWorker("examples.fraud_detection.app", env, workdir, log_level="warn")
            worker.start()
            say(f"worker started (pid {worker.pid}, log {worker.log_path})")
            say(f"metrics at http://127.0.0.1:{port}/metrics")
            try:
                code = asyncio.run(scenario(kafka, args.count, args.rate, args.timeout))
                asyncio.run(show_metrics(port))
                return code
            except KeyboardInterrupt:
                say("interrupted")
                return 130
            finally:
                # Before the broker goes: the worker commits its offsets on the way out.
                worker.stop()
    finally:
        say("stopped the worker, MLServer and Kafka")


if __name__ == "__main__":
    sys.exit(main())
