"""Drift alerts from a real worker (real broker, real MLServer): shifted inputs alert, stable do not.

The input feature ``x0`` of every event is drawn from N(0, 1), the drift
monitor's reference; then from N(2, 1). Windows are 2 s long.
"""

import asyncio
import random
import time

from tests.integration.observe import free_port, scrape, total
from tests.integration.support import Collector, Worker, produce, scoring_topics, unique

RATE = 100  # events/s


async def produce_for(kafka, topic, seconds, mean, prefix, rng):
    """Send ``RATE`` events a second for ``seconds``, ``x0`` drawn from N(mean, 1)."""
    sent = 0
    for step in range(int(seconds * 4)):
        batch = [
            {
                "id": f"{prefix}{step:03d}-{i:02d}",
                "x": [rng.gauss(mean, 1.0)] + [rng.uniform(0, 1) for _ in range(9)],
            }
            for i in range(RATE // 4)
        ]
        sent += await produce(kafka.bootstrap, topic, batch, key=lambda e: e["id"])
        await asyncio.sleep(0.25)
    return sent


async def test_a_shifted_input_distribution_alerts_and_a_stable_one_does_not(
    kafka, mlserver, tmp_path
):
    port = free_port()
    drift_topic = unique("drift")
    kafka.create_topic(drift_topic, partitions=1)
    env = {
        **scoring_topics(kafka),
        "KAFKA_BROKER": kafka.url,
        "MODEL_URL": mlserver.url,
        "MODEL_VERSION": "v1",
        "MODEL_OPTIONS": '{"input_name": "features", "shape": [10]}',
        "WEB_PORT": str(port),
        "DRIFT": "1",
        "DRIFT_TOPIC": drift_topic,
        "DRIFT_WINDOW": "2",
    }
    rng = random.Random(42)
    worker = Worker("tests.integration.apps.observed", env, tmp_path).start()
    try:
        async with Collector(kafka.bootstrap, env["OUT_TOPIC"], drift_topic) as seen:
            out, alerts = seen.records[env["OUT_TOPIC"]], seen.records[drift_topic]
            await seen.wait_for(lambda: True, 1)
            sent = await produce_for(kafka, env["IN_TOPIC"], 7, 0.0, "s", rng)
            await seen.wait_for(lambda: len(out) >= sent, 60, workers=[worker])
            deadline = time.monotonic() + 20
            while True:  # until at least two stable windows were judged
                _, samples = await scrape(port)
                checks = samples.get("faust_inference_drift_psi", [])
                if checks:
                    break
                assert time.monotonic() < deadline, "no drift check ran"
                await asyncio.sleep(0.5)
            await asyncio.sleep(2.5)
            _, samples = await scrape(port)
            stable_psi = total(samples, "faust_inference_drift_psi", feature="x0")
            assert stable_psi < 0.2, stable_psi  # below the alert threshold
            assert alerts == []

            await produce_for(kafka, env["IN_TOPIC"], 5, 2.0, "d", rng)
            await seen.wait_for(lambda: len(alerts) >= 1, 30, workers=[worker])
            _, samples = await scrape(port)
    finally:
        worker.stop()

    alert = alerts[0]
    assert alert["model"] == "model" and alert["feature"] == "x0"
    assert alert["psi"] > 0.2 and alert["samples"] >= 100
    # Most of the shifted mass sits in the reference's top bin.
    assert alert["observed"][-1] > 0.5 > alert["reference"][-1]
    assert total(samples, "faust_inference_drift_alerts_total", feature="x0") >= 1
    assert total(samples, "faust_inference_drift_psi", feature="x0") > 0.2
    print(f"stable PSI {stable_psi:.3f}, alert PSI {alert['psi']:.3f}")
