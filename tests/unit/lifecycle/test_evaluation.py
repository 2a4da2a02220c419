"""Evaluation figures equal scikit-learn's on the same pairs."""

import random

import pytest
from sklearn import metrics as skm

from faust_inference.core.cache import MemoryStore
from faust_inference.lifecycle.evaluation import (
    LiveEvaluation,
    Window,
    merged_evaluation,
    merged_metric,
)


def probabilities(n, classes, seed):
    rng = random.Random(seed)
    rows, labels = [], []
    for _ in range(n):
        raw = [rng.random() + 0.01 for _ in range(classes)]
        total = sum(raw)
        rows.append([x / total for x in raw])
        labels.append(rng.randrange(classes))
    return rows, labels


def test_binary_classification_matches_sklearn():
    rows, labels = probabilities(500, 2, seed=1)
    w = Window("classification")
    for p, y in zip(rows, labels, strict=True):
        w.add(p, y)
    m = w.metrics()
    pred = [int(p[1] > p[0]) for p in rows]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(labels, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(labels, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(labels, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, rows))


def test_multiclass_is_macro_averaged_like_sklearn():
    rows, labels = probabilities(600, 3, seed=2)
    w = Window("classification")
    for p, y in zip(rows, labels, strict=True):
        w.add(p, y)
    m = w.metrics()
    pred = [max(range(3), key=p.__getitem__) for p in rows]
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        assert m[name] == pytest.approx(fn(labels, pred, average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, rows))


def test_regression_matches_sklearn():
    rng = random.Random(3)
    truth = [rng.uniform(-5, 5) for _ in range(300)]
    pred = [t + rng.gauss(0, 1) for t in truth]
    w = Window("regression")
    for p, y in zip(pred, truth, strict=True):
        w.add([p], y)
    m = w.metrics()
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(truth, pred))
    assert m["rmse"] == pytest.approx(skm.mean_squared_error(truth, pred) ** 0.5)


def test_windows_from_several_workers_merge_to_the_figures_of_all_pairs():
    rows, labels = probabilities(400, 2, seed=4)
    parts = [Window("classification"), Window("classification")]
    whole = Window("classification")
    for i, (p, y) in enumerate(zip(rows, labels, strict=True)):
        parts[i % 2].add(p, y)
        whole.add(p, y)
    published = [{"evaluation": {"total": {"v2": w.as_dict()}}} for w in parts]
    assert merged_metric(published, "v2", "f1") == pytest.approx(whole.metrics()["f1"])
    assert merged_metric(published, "v9", "f1") is None


def test_predictions_wait_for_labels_with_a_ttl_and_a_bound():
    ev = LiveEvaluation("fraud", "classification", window_s=10, ttl_s=60, max_pending=3)
    for i in range(4):
        ev.predicted(f"k{i}".encode(), "v1", [0.9, 0.1], now=float(i))
    assert ev.waiting == 3 and ev.unmatched == 1  # k0 evicted by the bound
    assert ev.labelled(b"k1", 0, now=5.0)
    assert not ev.labelled(b"k0", 0, now=5.0) and ev.unknown_labels == 1
    assert ev.expire(now=62.5) == 1 and ev.unmatched == 2  # k2 (stored at 2.0) expired
    assert ev.labelled(b"k3", 1, now=12.0)
    assert sorted(ev.windows["v1"]) == [0.0, 10.0]
    assert ev.metrics("v1")["accuracy"] == 0.5


class PartitionedStore(MemoryStore):
    """A MemoryStore that records where each write and tombstone went, like a table's."""

    def __init__(self):
        super().__init__()
        self.tombstones = []

    def put(self, key, entry, partition):
        if partition is None:
            return False  # a partitioned table cannot place it
        return super().put(key, entry, partition)

    def delete(self, key, partition):
        super().delete(key, partition)
        if partition is not None:
            self.tombstones.append((key, partition))


def test_waiting_predictions_outlive_the_worker_that_made_them():
    store = PartitionedStore()  # stands for the changelog-backed table
    before = LiveEvaluation("fraud", "classification", store=store)
    before.predicted(b"t1", "v2", [0.2, 0.8], partition=1, now=100.0)
    before.predicted(b"t2", "v2", [0.9, 0.1], partition=3, now=101.0)
    before.predicted(b"t3", "v2", [0.9, 0.1], now=101.0)  # no partition: not placeable
    assert before.waiting == 2
    # A new worker recovers the table and owns partition 1 only.
    after = LiveEvaluation("fraud", "classification", store=store, ttl_s=60, owned=lambda: {1})
    after.rebuild()
    assert after.waiting == 1
    assert after.labelled(b"t1", 1, now=130.0) and after.metrics("v2")["accuracy"] == 1.0
    assert ("t1", 1) in store.tombstones  # written to the prediction's partition
    assert ("t2", 3) not in store.tombstones  # partition 3 is another worker's to clear
    assert after.expire(now=1000.0) == 0 and after.unmatched == 0


def test_expiry_counts_only_the_partitions_a_worker_owns():
    owned = {0, 1}
    ev = LiveEvaluation("fraud", "classification", ttl_s=10, owned=lambda: owned)
    ev.predicted("a", "v1", [0.5, 0.5], partition=0, now=0.0)
    ev.predicted("b", "v1", [0.5, 0.5], partition=1, now=1.0)
    owned.discard(1)  # a rebalance took partition 1 away
    assert ev.expire(now=20.0) == 1 and ev.unmatched == 1 and ev.waiting == 0
    assert ev.store.get("b") is None  # forgotten here; its new owner counts it


def test_windows_of_every_worker_add_up_per_window():
    rows, labels = probabilities(300, 2, seed=5)
    workers = [LiveEvaluation("m", "classification", window_s=10) for _ in range(3)]
    whole: dict[float, Window] = {}
    for i, (p, y) in enumerate(zip(rows, labels, strict=True)):
        ev, now = workers[i % 3], 1000.0 + i / 10  # 30 s: windows 1000, 1010, 1020
        ev.predicted(f"k{i}", "v1", p, now=now)
        assert ev.labelled(f"k{i}", y, now=now + 0.05)
        start = (now + 0.05) - (now + 0.05) % 10
        whole.setdefault(start, Window("classification")).add(p, y)
    published = [{"evaluation": ev.snapshot()} for ev in workers]
    merged = merged_evaluation(published)
    assert sorted(merged.windows["v1"]) == sorted(whole) and len(whole) == 3
    for start, w in whole.items():
        assert merged.windows["v1"][start].metrics() == pytest.approx(w.metrics())
    report = merged.report()
    assert [w["start"] for w in report["windows"]["v1"]] == sorted(whole, reverse=True)
    assert report["versions"]["v1"]["n"] == 300 and report["window_s"] == 10
    # The rollout guard's figure: only windows that end after the step began.
    late = whole[1010.0].merge(whole[1020.0]).metrics()["f1"]
    assert merged_metric(published, "v1", "f1", since=1012.0) == pytest.approx(late)
    assert merged_metric(published, "v1", "f1", since=5000.0) is None
