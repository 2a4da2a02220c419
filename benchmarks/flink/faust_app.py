"""The faust-inference side: Kafka topic -> ``@infer`` (provider ``openai``) -> Kafka topic.

The same work as ``job.py`` asks of Flink: read ``{"id", "ts", "input"}``, call
the model with ``input`` (chat: one user message after the same system prompt;
embeddings: the text), write ``{"id", "ts", "output"}`` (plus ``sent``, the
wall-clock time of the send, and ``infer_s``, the request's seconds, with which
``run.py`` splits our latency into stages). Settings come from the
environment (``run.py`` sets them); ``FLINK_BENCH_BATCH`` is the only knob Flink
has no counterpart for: its ``openai`` provider sends one row per request.

``FLINK_BENCH_PRODUCER_LINGER`` (seconds, default 0.005) is Faust's
``producer_linger``, for trying its cost in latency.

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
    producer_linger=float(env("FLINK_BENCH_PRODUCER_LINGER", "0.005")),
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
