"""Evaluation figures equal scikit-learn's on the same pairs."""

import random

import pytest
from sklearn import metrics as skm

from faust_inference.lifecycle.evaluation import LiveEvaluation, Window, merged_metric


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
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):
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
    assert len(ev.pending) == 3 and ev.unmatched == 1  # k0 evicted by the bound
    assert ev.labelled(b"k1", 0, now=5.0)
    assert not ev.labelled(b"k0", 0, now=5.0) and ev.unknown_labels == 1
    assert ev.expire(now=62.5) == 1 and ev.unmatched == 2  # k2 (stored at 2.0) expired
    assert ev.labelled(b"k3", 1, now=12.0)
    assert sorted(ev.windows["v1"]) == [0.0, 10.0]
    assert ev.metrics("v1")["accuracy"] == 0.5
