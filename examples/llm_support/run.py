"""Run the LLM customer-support example on this machine with one command.

    python -m examples.llm_support.run [--count 8]
    OPENAI_API_KEY=... python -m examples.llm_support.run \
        --endpoint https://api.openai.com/v1 --model gpt-4o-mini

Starts a real Kafka broker and, unless ``--endpoint`` names another
OpenAI-compatible server, SmolLM2-135M-Instruct served by llama-cpp-python
(built into ``.cache/`` on first use: a few minutes). Then starts the Faust
worker with ``faust -A examples.llm_support.app worker``, sends ``--count``
tickets, and prints each answer (or dead letter) as it arrives, with how
often the model's category matched the expected one. Stops everything at
the end (or on Ctrl-C).

SmolLM2-135M is tiny: its JSON always follows the schema (the server
constrains it), but its categories and replies are often poor. Point
``--endpoint`` at a real model to see the same pipeline give good answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from devtools.kafka import KafkaBroker, ensure_jars
from devtools.llm import LlamaServer
from devtools.llm import ensure_venv as ensure_llm
from devtools.worker import FaustWorker
from examples.llm_support.producer import send_tickets
from examples.llm_support.tickets import make_tickets

TOPICS = {"tickets": 4, "ticket-answers": 1, "tickets.urgent": 1, "tickets.dlq": 1}


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


@dataclass
class Summary:
    """What a run saw: for the closing lines, and for the example's test."""

    tickets: list[dict[str, Any]]
    answers: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    @property
    def agreed(self) -> int:
        """Answers whose category is the one the ticket was written for."""
        expected = {t["id"]: t["expected"] for t in self.tickets}
        return sum(1 for a in self.answers if a["category"] == expected.get(a["id"]))


async def scenario(
    bootstrap: str,
    worker: FaustWorker,
    *,
    count: int,
    timeout: float = 300.0,
    seed: int = 11,
    topic: str = "tickets",
) -> Summary:
    """Send ``count`` tickets and print every outcome until each ticket has one.

    Outcomes of other tickets (an earlier run's, on the same topics) are skipped.
    """
    run = Summary(make_tickets(count, seed=seed))
    ids = {t["id"] for t in run.tickets}
    consumer = AIOKafkaConsumer(
        "ticket-answers",
        "tickets.dlq",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        say(f"sending {count} tickets; answers follow as the model writes them")
        await send_tickets(bootstrap, run.tickets, topic)
        while len(run.answers) + len(run.dead) < count:
            if time.monotonic() > deadline:
                say(f"timed out: {len(run.answers) + len(run.dead)} of {count} have an outcome")
                return run
            worker.assert_alive()
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    value = orjson.loads(record.value)
                    if tp.topic == "ticket-answers" and value["id"] in ids:
                        run.answers.append(value)
                        show_answer(value)
                    elif tp.topic == "tickets.dlq" and value["event"]["id"] in ids:
                        run.dead.append(value)
                        print(
                            f"  DLQ    {value['event']['id']}  after {value['attempts']} "
                            f"attempts: {value['error_class']}: {value['error'][:300]}"
                        )
        run.complete = True
    finally:
        await consumer.stop()
    say(
        f"{len(run.answers)} answered, {len(run.dead)} dead-lettered; the category matched "
        f"the expected one for {run.agreed} of {len(run.answers)}"
    )
    return run


def show_answer(a: Mapping[str, Any]) -> None:
    flag = "URGENT" if a["urgent"] else "      "
    print(
        f"  {a['id']}  {a['category']:<9} {flag}  ({a['latency_ms']:.0f} ms, "
        f"{a['attempts']} attempt{'s' if a['attempts'] != 1 else ''})\n      > {a['reply'][:160]}"
    )


@contextlib.contextmanager
def chat_server(endpoint: str | None, model: str | None) -> Iterator[dict[str, str]]:
    """The worker's LLM_* settings: the given endpoint, or a local SmolLM2 server."""
    if endpoint:
        say(f"using {endpoint} (model {model or 'gpt-4o-mini'})")
        yield {
            "LLM_URL": endpoint,
            "LLM_MODEL": model or "gpt-4o-mini",
            "LLM_JSON_MODE": "json_schema",
        }
        return
    with LlamaServer() as server:
        say(f"SmolLM2-135M-Instruct served by llama-cpp-python at {server.url}")
        yield {
            "LLM_URL": server.url,
            "LLM_MODEL": server.model_name,
            "LLM_JSON_MODE": "json_object",
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="tickets to send")
    parser.add_argument("--endpoint", help="an OpenAI-compatible base URL (default: local)")
    parser.add_argument("--model", help="the model's name at --endpoint")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for all answers")
    args = parser.parse_args(argv)

    say("preparing Kafka jars" + ("" if args.endpoint else " and the chat-model server"))
    ensure_jars()
    if not args.endpoint:
        ensure_llm()
    workdir = Path(tempfile.mkdtemp(prefix="llm-support-example-"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with KafkaBroker() as kafka, chat_server(args.endpoint, args.model) as llm:
            for topic, partitions in TOPICS.items():
                kafka.create_topic(topic, partitions=partitions)
            worker = FaustWorker(
                "examples.llm_support.app",
                {"KAFKA_BROKER": kafka.url, **llm},
                workdir,
                log_level="warn",
            )
            worker.start()
            say(f"worker started (pid {worker.pid}, log {worker.log_path})")
            try:
                run = asyncio.run(
                    scenario(kafka.bootstrap, worker, count=args.count, timeout=args.timeout)
                )
                return 0 if run.complete else 1
            except KeyboardInterrupt:
                say("interrupted")
                return 130
            finally:
                worker.stop()
    finally:
        say("stopped the worker, the model server and Kafka")


if __name__ == "__main__":
    sys.exit(main())
