"""Faust apps measured by ``benchmarks/throughput.py``; ``BENCH_MODE`` picks one.

* ``naive``: what one writes without this library: one awaited HTTP call per
  event, inside the agent loop.
* ``infer``: the same model behind ``@infer``, ``BENCH_CONCURRENCY`` in
  flight, ``BENCH_BATCH`` events per request.
* ``bare``: forwards each event with no model at all (Faust's own ceiling).

``BENCH_CACHE`` (JSON, e.g. ``{"partitions": 4}``) gives the model a result cache.
"""

from __future__ import annotations

import json
import os

import aiohttp
import faust

from faust_inference import infer, install

env = os.environ.get
MODE = env("BENCH_MODE", "bare")
URL = env("BENCH_MODEL_URL", "http://127.0.0.1:8080")

app = faust.App(
    env("BENCH_APP_ID", f"bench-{MODE}"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    web_enabled=False,
    broker_commit_interval=1.0,
    topic_disable_leader=True,
    producer_linger=float(env("BENCH_LINGER", "0")),
    topic_partitions=4,
)
install(app)
source = app.topic(env("BENCH_IN", "bench-in"), value_serializer="json")
sink = app.topic(env("BENCH_OUT", "bench-out"), value_serializer="json")

model = app.model(
    "bench",
    provider="kserve",
    endpoint=URL,
    remote_name="bench",
    max_concurrency=int(env("BENCH_CONCURRENCY", "50")),
    batch_size=int(env("BENCH_BATCH", "1")),
    batch_timeout=float(env("BENCH_BATCH_TIMEOUT", "0.002")),
    timeout=10.0,
    cache=json.loads(env("BENCH_CACHE", "null")),
)


@model.preprocess
def features(event: dict[str, object]) -> object:
    return event["x"]


if MODE == "naive":

    @app.agent(source)
    async def naive(stream):  # type: ignore[no-untyped-def]
        infer_url = f"{URL}/v2/models/bench/infer"
        async with aiohttp.ClientSession() as session:
            async for event in stream:
                x = event["x"]
                body = {
                    "inputs": [
                        {"name": "input-0", "shape": [1, len(x)], "datatype": "FP64", "data": x}
                    ]
                }
                async with session.post(infer_url, json=body) as resp:
                    answer = await resp.json()
                await sink.send(value={"id": event["id"], "p": answer["outputs"][0]["data"]})

elif MODE == "infer":

    @app.agent(source)
    @infer(model)
    async def scored(results):  # type: ignore[no-untyped-def]
        async for r in results:
            await sink.send(value={"id": r.event["id"], "p": r.output})

elif MODE == "local":
    # infer() with an in-process provider: the pipeline's own cost, no HTTP.
    from faust_inference import InferenceRunner, ModelSettings, Predictions, RemoteModel

    class _Echo:
        max_batch_size = None

        async def infer(self, inputs):  # type: ignore[no-untyped-def]
            return Predictions(list(inputs))

        async def aclose(self) -> None:
            pass

    _settings = ModelSettings(
        name="local",
        provider="local",
        max_concurrency=50,
        batch_size=int(env("BENCH_BATCH", "1")),
        batch_timeout=0.002,
    )
    local = RemoteModel(_settings, InferenceRunner(_Echo(), _settings))
    local.preprocess(features)

    @app.agent(source)
    @infer(local)
    async def scored_locally(results):  # type: ignore[no-untyped-def]
        async for r in results:
            await sink.send(value={"id": r.event["id"], "p": r.output})

else:

    @app.agent(source)
    async def bare(stream):  # type: ignore[no-untyped-def]
        async for event in stream:
            await sink.send(value={"id": event["id"], "p": event["x"]})
