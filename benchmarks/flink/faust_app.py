"""The faust-inference side: Kafka topic -> ``@infer`` (provider ``openai``) -> Kafka topic.

The same work as ``job.py`` asks of Flink: read ``{"id", "ts", "input"}``, call
the model with ``input`` (chat: one user message after the same system prompt;
embeddings: the text), write ``{"id", "ts", "output"}`` (plus ``sent``, the
wall-clock time of the send, and ``infer_s``, the request's seconds, with which
``run.py`` splits our latency into stages). Settings come from the
environment (``run.py`` sets them); ``FLINK_BENCH_BATCH`` is the only knob Flink
has no counterpart for: its ``openai`` provider sends one row per request.

How it is configured, as a user would from the README and docs/performance.md,
nothing a user would not set:

* ``max_concurrency`` = the cap, as Flink's ``max-concurrent-operations``;
* embeddings ``batch_size=16, batch_timeout=0.005`` (docs' "Tuning": batch where
  the provider takes batches; the runner waits for company only while inputs
  arrive closer together than the timeout, so a paced stream is not delayed),
  chat ``batch_size=1`` (a chat request holds one conversation);
* ``producer_linger=0.005`` (docs' "Tuning": results share produce requests under
  load; Flink's Kafka client 4.2 lingers 5 ms by default too, so both match);
* ``broker_commit_interval=1.0``, as Flink's checkpoint every second;
* ``store="memory://"``, ``web_enabled=False``: no tables, no web views needed.

Measured and not kept (2026-11-28, one run each of three settings, both systems
at once, load average 4-9): ``sys.setswitchinterval(0.0005)`` (the docs' tuning
for a loaded box): p99 ours/Flink 1.84, 0.54, 1.55 against 2.05, 1.88, 1.63
without it, no consistent change; ``producer_linger=0`` (Faust's default): 1.32,
2.14, 0.96 against 2.05, 1.88, 1.04, and embeddings' burst fell from 751 to 162
events/s.

``FLINK_BENCH_PRODUCER_LINGER`` (seconds, default 0, Faust's own default and what
the README's app runs with) is Faust's ``producer_linger``; Flink's sink keeps its
Kafka client's default (``linger.ms`` 5) unless ``job.py`` is told otherwise: it
reads ``FLINK_BENCH_FLINK_LINGER`` (seconds), else this same variable, so setting
only this one moves both systems together (the 5 ms on both of earlier runs:
``FLINK_BENCH_PRODUCER_LINGER=0.005``).

Two experiment knobs, off by default, try the profile's findings without
touching the library (see docs/performance.md):
``FLINK_BENCH_SWITCH_INTERVAL=0.0005`` (the GIL hand-over between Faust's
consumer thread and the event loop) and ``FLINK_BENCH_QUIET_ROOT_LOGGER=1``
(undo the DEBUG root level Faust's worker leaves behind at ``-l warn``).
``FLINK_BENCH_CPROFILE=DIR`` profiles the event loop's thread with cProfile
(where our code runs; not Faust's consumer thread), written to
``DIR/<app id>.prof`` every 5 seconds (for when py-spy is not installed).
"""

from __future__ import annotations

import logging
import os
import sys
import time

import faust

from faust_inference import infer, install

env = os.environ.get
TASK = env("FLINK_BENCH_TASK", "embedding")
if env("FLINK_BENCH_SWITCH_INTERVAL"):  # an experiment knob; see docs/performance.md
    sys.setswitchinterval(float(env("FLINK_BENCH_SWITCH_INTERVAL", "0.005")))

app = faust.App(
    env("FLINK_BENCH_APP_ID", "flink-bench"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    web_enabled=False,
    broker_commit_interval=1.0,
    topic_disable_leader=True,
    producer_linger=float(env("FLINK_BENCH_PRODUCER_LINGER", "0")),
)
install(app)
source = app.topic(env("FLINK_BENCH_SOURCE", "in"), value_serializer="json")
sink = app.topic(env("FLINK_BENCH_SINK", "out"), value_serializer="json")

model = app.model(
    "bench",
    provider="openai",
    endpoint=env("FLINK_BENCH_ENDPOINT", "http://127.0.0.1:8080/v1"),
    remote_name="fake-model",
    task="embedding" if TASK == "embedding" else "text_generation",
    system_prompt=None if TASK == "embedding" else "You are a helpful assistant.",
    max_concurrency=int(env("FLINK_BENCH_IN_FLIGHT", "10")),
    batch_size=int(env("FLINK_BENCH_BATCH", "1")),
    batch_timeout=float(env("FLINK_BENCH_BATCH_TIMEOUT", "0.005")),
    timeout=30.0,
)


@model.preprocess
def text(event: dict[str, object]) -> object:
    return event["input"]


@app.agent(source)
@infer(model)
async def predicted(results):  # type: ignore[no-untyped-def]
    async for r in results:
        # sent and infer_s let run.py split the latency into before / inference / after.
        result = {"id": r.event["id"], "ts": r.event["ts"], "output": r.output}
        await sink.send(value={**result, "sent": time.time(), "infer_s": r.latency_s})


if env("FLINK_BENCH_CPROFILE"):  # a diagnostic knob: where the loop's CPU goes

    @app.task
    async def profile_loop() -> None:
        import asyncio
        import cProfile
        from pathlib import Path

        out = Path(env("FLINK_BENCH_CPROFILE", ".")) / f"{app.conf.id}.prof"
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(720):  # an hour at most
            await asyncio.sleep(5)
            profiler.dump_stats(out)  # this stops the profiler: start it again
            profiler.enable()


if env("FLINK_BENCH_QUIET_ROOT_LOGGER"):  # an experiment knob: the profile's finding

    @app.task
    async def quiet_root_logger() -> None:
        # Faust's worker at -l warn sets the root logger to DEBUG for its
        # start-up spinner and never resets it: every debug call in aiokafka
        # and Faust then builds a LogRecord that no handler wants.
        root = logging.getLogger()
        root.handlers = [h for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
        root.setLevel(min((h.level for h in root.handlers), default=logging.WARNING))
