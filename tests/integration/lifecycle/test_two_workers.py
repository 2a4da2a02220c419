"""The lifecycle on the real broker, with two workers in one group (see conftest.py).

In order, on the same group: a live switch through the CLI; live and offline
evaluation against scikit-learn; a slow and failing shadow; a failing canary
rolled back and a healthy one promoted; a sticky 90/10 split over 10,000 keys
across a restart of both workers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from sklearn import metrics as skm

from examples.fraud_detection.train import make_transactions
from faust_inference import ModelRegistry
from faust_inference.lifecycle import Change, ControlClient, RoutingState
from faust_inference.lifecycle.report import model_report
from faust_inference.lifecycle.rollout import start
from tests.integration.lifecycle.support import (
    Collector,
    acli,
    applied,
    both_working,
    produce,
    wait_applied,
)

KEYS = 10_000
VERSIONS = ("v1", "v2", "v3")


async def settle(kafka, group, seen):
    if not group.settled:
        await both_working(kafka.bootstrap, seen, group.env, group.workers)
        group.settled = True


async def change(kafka, group, c):
    client = ControlClient(kafka.bootstrap, group.env["APP_ID"])
    try:
        state = await client.change("model", c, versions=VERSIONS, default="v1")
    finally:
        await client.aclose()
    await wait_applied(group.workers, state.revision)
    return state


async def report(kafka, group):
    """What ``inference stats model --json`` prints, without a CLI process."""
    client = ControlClient(kafka.bootstrap, group.env["APP_ID"])
    try:
        state = (await client.states()).get("model") or RoutingState.initial(
            "model", "v1", versions=VERSIONS
        )
        stats = await client.read(client.stats_topic)
    finally:
        await client.aclose()
    published = [v for k, v in stats.items() if k.startswith("model|")]
    return model_report("model", VERSIONS, state, published)


def ids_in(out, ids):
    return lambda: ids <= {r["id"] for r in out}


async def test_a_cli_switch_reaches_both_workers_with_no_event_lost(kafka, group):
    env, workers = group.env, group.workers
    rows, _ = make_transactions(4000, seed=21)
    async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
        out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
        await settle(kafka, group, seen)
        stop, sent = asyncio.Event(), []

        async def trickle():  # events keep flowing through the switch
            for i in range(0, 4000, 20):
                if stop.is_set():
                    return
                batch = [{"id": f"sw{j:05d}", "x": rows[j]} for j in range(i, i + 20)]
                await produce(kafka.bootstrap, env["IN_TOPIC"], batch, key=lambda e: e["id"])
                sent.extend(batch)
                await asyncio.sleep(0.1)

        producing = asyncio.create_task(trickle())
        await asyncio.sleep(1.0)
        done = await acli(env, "switch", "model", "v2", "--reason", "integration test")
        assert done.returncode == 0, done.stderr
        assert "switch to v2 (integration test)" in done.stdout
        revision = int(done.stdout.split("revision ")[1].split(":")[0])
        await wait_applied(workers, revision)
        listing = asyncio.create_task(acli(env, "list"))  # a process of its own, meanwhile
        await asyncio.sleep(1.0)
        stop.set()
        await producing
        await seen.wait_for(ids_in(out, {e["id"] for e in sent}), 90, workers=workers)
        late = [{"id": f"swl{i}", "x": rows[i]} for i in range(200)]
        await produce(kafka.bootstrap, env["IN_TOPIC"], late, key=lambda e: e["id"])
        await seen.wait_for(ids_in(out, {e["id"] for e in late}), 60, workers=workers)
        listing = await listing
        switched_dlq = [d for d in dlq if d["event"]["id"].startswith("sw")]
    await change(kafka, group, Change.switch("v1", reason="back for the next tests"))

    assert not switched_dlq, switched_dlq[:3]
    mine = [r for r in out if r["id"].startswith("sw") and not r["id"].startswith("swl")]
    assert {r["version"] for r in mine} == {"v1", "v2"}
    by_partition = {}
    for r in sorted(mine, key=lambda r: r["offset"]):
        by_partition.setdefault(r["partition"], []).append(r["version"])
    for versions in by_partition.values():  # v1 up to the switch, v2 after it
        assert sum(a != b for a, b in itertools.pairwise(versions)) <= 1, versions
        assert versions[0] == "v1"
    after = [r for r in out if r["id"].startswith("swl")]
    assert {(r["version"], r["variant"]) for r in after} == {("v2", "default")}
    assert len({r["pid"] for r in after}) == 2, "both workers answer with v2"
    delays = [d for w in workers for rev, _, d in applied(w) if rev == revision]
    print(
        f"\nswitch applied by the workers {', '.join(f'{d:.2f}' for d in delays)} s "
        "after it was written"
    )
    assert len(delays) == 2 and max(delays) < 5.0
    assert listing.returncode == 0, listing.stderr
    assert "model  v2       100%" in listing.stdout


def sklearn_figures(pairs):
    y = [label for _, label in pairs]
    pred = [int(p[1] > p[0]) for p, _ in pairs]
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "log_loss": skm.log_loss(y, [p for p, _ in pairs], labels=[0, 1]),
    }


async def test_live_and_offline_evaluation_equal_sklearn(kafka, group):
    """Predictions made before a restart and a rebalance meet labels sent after them."""
    env, n = group.env, 600
    rows, labels = make_transactions(n, seed=33)
    events = [{"id": f"ev{i:04d}", "x": rows[i]} for i in range(n)]
    async with Collector(kafka.bootstrap, env["OUT_TOPIC"]) as seen:
        out = seen.records[env["OUT_TOPIC"]]
        await settle(kafka, group, seen)
        made_by = {w.pid for w in group.workers}
        await produce(kafka.bootstrap, env["IN_TOPIC"], events, key=lambda e: e["id"])
        await seen.wait_for(ids_in(out, {e["id"] for e in events}), 90, workers=group.workers)
        # Worker 0 stops (worker 1 recovers its partitions of the pending table), then a
        # new worker 0 joins and takes partitions back: the labels come after both moves.
        await asyncio.to_thread(group.restart_one)
        await both_working(kafka.bootstrap, seen, env, group.workers)
        group.settled = True
        workers = group.workers
        ev_pids = {r["pid"] for r in out if r["id"].startswith("ev")}
        assert made_by & ev_pids - {w.pid for w in workers}, "the stopped worker scored some"
        labelled = [{"id": e["id"], "label": labels[i]} for i, e in enumerate(events)]
        await produce(kafka.bootstrap, env["LABELS_TOPIC"], labelled, key=lambda e: e["id"])
        for _ in range(30):
            await asyncio.sleep(1.0)
            live = (await report(kafka, group))["evaluation"]["versions"].get("v1", {})
            if live.get("n") == n:
                break
        stats, offline = await asyncio.gather(  # two CLI processes at once
            acli(env, "stats", "model", "--json"),
            acli(
                env,
                "evaluate",
                "model",
                "--version",
                "v1",
                "--events",
                env["IN_TOPIC"],
                "--labels",
                env["LABELS_TOPIC"],
                "--json",
            ),
        )
        assert stats.returncode == 0, stats.stderr
        shown = json.loads(stats.stdout)["evaluation"]
        assert shown["versions"]["v1"] == live
        assert sum(w["n"] for w in shown["windows"]["v1"]) == n  # windows over both workers
    by_id = {r["id"]: r["output"] for r in out}
    expected = sklearn_figures([(by_id[e["id"]], labels[i]) for i, e in enumerate(events)])
    assert live.get("n") == n, live
    assert offline.returncode == 0, offline.stderr
    figures = json.loads(offline.stdout)
    assert figures["n"] == n and figures["version"] == "v1"
    for name, value in expected.items():
        assert live[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
        assert figures[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    print(f"\nlive = offline = scikit-learn: {expected}")


async def test_a_slow_failing_shadow_leaves_the_primary_outputs_unchanged(kafka, group, mlserver):
    env, workers, n = group.env, group.workers, 800
    group.v2.configure(latency=0.3, error_rate=0.5, seed=3)
    rows, _ = make_transactions(n, seed=44)
    events = [{"id": f"sh{i:04d}", "x": rows[i]} for i in range(n)]
    try:
        done = await acli(env, "shadow", "model", "v2", "--rate", "1.0")
        assert done.returncode == 0, done.stderr
        async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
            out = seen.records[env["OUT_TOPIC"]]
            await settle(kafka, group, seen)
            await wait_applied(workers, int(done.stdout.split("revision ")[1].split(":")[0]))
            before = await report(kafka, group)
            await produce(kafka.bootstrap, env["IN_TOPIC"], events, key=lambda e: e["id"])
            await seen.wait_for(ids_in(out, {e["id"] for e in events}), 90, workers=workers)
            await asyncio.sleep(2.5)  # the last figures are published
            after = await report(kafka, group)
            dlq = [d for d in seen.records[env["DLQ_TOPIC"]] if d["event"]["id"][:2] == "sh"]
    finally:
        await change(kafka, group, Change.shadow_off())
        group.v2.configure(latency=0.005, error_rate=0.0)

    mine = [r for r in out if r["id"].startswith("sh")]
    assert not dlq and {r["version"] for r in mine} == {"v1"}
    registry = ModelRegistry()
    direct = registry.register(
        "direct",
        provider="kserve",
        endpoint=mlserver.url,
        remote_name="fraud",
        version="v1",
        input_name="features",
    )
    x = {e["id"]: e["x"] for e in events}
    try:
        for r in mine[:: len(mine) // 10]:
            assert await direct.predict(x[r["id"]]) == pytest.approx(r["output"], abs=1e-12)
    finally:
        await registry.aclose()

    def grew(what):
        old = before["shadow_stats"][what].get("v2", 0)
        return after["shadow_stats"][what].get("v2", 0) - old

    sent, dropped, failed = grew("sent"), grew("dropped"), grew("failed")
    assert sent + dropped >= n and dropped > 0 and failed > 0
    pair = after["shadow_stats"]["agreement"]["v1->v2"]
    assert pair["compared"] > 0 and pair["measure"] == "agreement"
    print(
        f"\nshadow copies: {sent} sent, {dropped} dropped at the cap, {failed} failed; "
        f"agreement {pair['value']:.3f} over {pair['compared']} pairs"
    )


async def wait_rollout(kafka, group, status, timeout):
    client = ControlClient(kafka.bootstrap, group.env["APP_ID"])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            state = (await client.states()).get("model")
            if state and state.rollout and state.rollout.status == status:
                return state
            for w in group.workers:
                w.assert_alive()
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    raise AssertionError(f"the rollout never got {status}: {state}")


async def test_a_failing_canary_is_rolled_back_and_a_healthy_one_promoted(kafka, group):
    env = group.env
    guards = [
        "--max-error-rate",
        "0.05",
        "--min-requests",
        "20",
        "--dwell",
        "2",
        "--steps",
        "20,50",
    ]
    stop = asyncio.Event()
    async with Collector(kafka.bootstrap, env["OUT_TOPIC"]) as seen:
        await settle(kafka, group, seen)

        async def traffic():
            for i in itertools.count(0, 40):
                if stop.is_set():
                    return
                batch = [{"id": f"ro{i + j}", "x": [0.3] * 10} for j in range(40)]
                await produce(kafka.bootstrap, env["IN_TOPIC"], batch, key=lambda e: e["id"])
                await asyncio.sleep(0.1)

        feeding = asyncio.create_task(traffic())
        try:
            group.v2.configure(error_rate=0.2, seed=7)
            done = await acli(env, "rollout", "model", "v2", *guards)
            assert done.returncode == 0, done.stderr
            failed = await wait_rollout(kafka, group, "rolled_back", 60)
            group.v2.configure(error_rate=0.0)
            r = start(
                failed,
                "v2",
                steps=(20, 50),
                dwell_s=2,
                now=time.time(),
                max_error_rate=0.05,
                min_requests=20,
            )
            await change(kafka, group, Change(action="rollout", rollout=r, source="code"))
            promoted = await wait_rollout(kafka, group, "promoted", 60)
        finally:
            stop.set()
            await feeding
            group.v2.configure(error_rate=0.0)
        history = await acli(env, "history", "model")

    assert failed.default == "v1" and failed.arms() == [("v1", 100.0)]
    assert "guard error_rate broke at 20%: error rate" in failed.rollout.last_decision
    assert promoted.default == "v2" and promoted.arms() == [("v2", 100.0)]
    actions = [c.action for c in promoted.history][-6:]
    assert actions == ["rollout", "rollback", "rollout", "advance", "advance", "promote"]
    assert "guard error_rate broke" in history.stdout and "promote to v2" in history.stdout
    print(
        f"\nrolled back: {failed.rollout.last_decision}\npromoted: {promoted.rollout.last_decision}"
    )


async def score_keys(kafka, group, round_):
    """Send one event per key (ids name the round, keys do not); the arm each key took."""
    env, tag = group.env, f"k{round_}-"
    sent = [{"id": f"{tag}{i:05d}", "x": [0.5] * 10} for i in range(KEYS)]
    async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
        out = seen.records[env["OUT_TOPIC"]]
        t0 = time.monotonic()
        await settle(kafka, group, seen)
        t1 = time.monotonic()
        await produce(kafka.bootstrap, env["IN_TOPIC"], sent, key=lambda e: e["id"][len(tag) :])
        t2 = time.monotonic()
        await seen.wait_for(
            lambda: len({r["id"] for r in out if r["id"].startswith(tag)}) >= KEYS,
            120,
            workers=group.workers,
        )
        print(
            f"\nround {round_}: settle {t1 - t0:.1f}s, produce {t2 - t1:.1f}s, "
            f"score {time.monotonic() - t2:.1f}s"
        )
        dlq = [d for d in seen.records[env["DLQ_TOPIC"]] if d["event"]["id"].startswith(tag)]
    mine = [r for r in out if r["id"].startswith(tag)]
    arms = {r["id"][len(tag) :]: (r["version"], r["variant"]) for r in mine}
    return arms, {r["pid"] for r in mine}, dlq


async def test_a_90_10_split_is_sticky_across_a_restart_of_both_workers(kafka, group):
    # The 90% arm on the fake endpoint, the 10% on MLServer: 20,000 events in CI time.
    await change(kafka, group, Change.switch("v3", reason="v3 is the control arm"))
    done = await acli(group.env, "split", "model", "v3=90", "v1=10", "--reason", "A/B test")
    assert done.returncode == 0, done.stderr
    await wait_applied(group.workers, int(done.stdout.split("revision ")[1].split(":")[0]))
    first, pids1, dlq1 = await score_keys(kafka, group, 1)
    t = time.monotonic()
    group.stop()
    group.start()
    print(f"restart {time.monotonic() - t:.1f}s")
    second, pids2, dlq2 = await score_keys(kafka, group, 2)

    assert not dlq1 and not dlq2
    assert len(pids1) == 2 and len(pids2) == 2 and not pids1 & pids2
    share = sum(v == "v1" for v, _ in first.values()) / KEYS
    assert 0.08 <= share <= 0.12, share
    assert set(first.values()) == {("v3", "control"), ("v1", "treatment")}
    assert first == second, "a key changed arms across the restart"
    print(
        f"\nthe 10% arm's share over {KEYS} keys: {share:.2%}; every key kept its arm across a restart"
    )
