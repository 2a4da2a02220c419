"""Live and offline evaluation against labels equal scikit-learn's figures on the same pairs.

Two workers score transactions with the real MLServer; labels arrive on their
own topic, keyed like the events. Live figures are read with
``faust inference stats --json``, offline ones with ``faust inference evaluate``.
"""

import asyncio
import json

import pytest
from sklearn import metrics as skm

from examples.fraud_detection.train import make_transactions
from tests.integration.lifecycle.support import (
    APP,
    Collector,
    Worker,
    acli,
    both_working,
    lifecycle_env,
    produce,
)
from tests.integration.support import unique

N = 600


def sklearn_figures(pairs):
    y = [label for _, label in pairs]
    pred = [int(p[1] > p[0]) for p, _ in pairs]
    proba = [p for p, _ in pairs]
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "log_loss": skm.log_loss(y, proba, labels=[0, 1]),
    }


async def test_live_and_offline_evaluation_equal_sklearn(kafka, mlserver, tmp_path):
    labels_topic = unique("labels")
    kafka.create_topic(labels_topic, partitions=4)
    env = lifecycle_env(kafka, mlserver.url, LABELS_TOPIC=labels_topic)
    rows, labels = make_transactions(N, seed=33)
    events = [{"id": f"x{i:04d}", "x": rows[i]} for i in range(N)]
    workers = [Worker(APP, env, tmp_path, f"w{i}").start() for i in range(2)]
    try:
        async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
            out = seen.records[env["OUT_TOPIC"]]
            await both_working(kafka.bootstrap, seen, env, workers)
            await produce(kafka.bootstrap, env["IN_TOPIC"], events, key=lambda e: e["id"])
            ids = {e["id"] for e in events}
            await seen.wait_for(lambda: ids <= {r["id"] for r in out}, 120, workers=workers)
            labelled = [{"id": e["id"], "label": labels[i]} for i, e in enumerate(events)]
            await produce(kafka.bootstrap, labels_topic, labelled, key=lambda e: e["id"])
            for _ in range(60):
                stats = await acli(env, "stats", "model", "--json")
                assert stats.returncode == 0, stats.stderr
                live = json.loads(stats.stdout)["evaluation"]["versions"].get("v1", {})
                if live.get("n") == N:
                    break
                await asyncio.sleep(1.0)
            offline = await acli(env, "evaluate", "model", "--version", "v1", "--events",
                                 env["IN_TOPIC"], "--labels", labels_topic, "--json")
    finally:
        for w in workers:
            w.stop()
    by_id = {r["id"]: r["output"] for r in out}
    pairs = [(by_id[e["id"]], labels[i]) for i, e in enumerate(events)]
    expected = sklearn_figures(pairs)
    assert live["n"] == N, live
    for name, value in expected.items():
        assert live[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert offline.returncode == 0, offline.stderr
    figures = json.loads(offline.stdout)
    assert figures["n"] == N
    for name, value in expected.items():
        assert figures[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    print(f"\nlive = offline = sklearn: {expected}")
