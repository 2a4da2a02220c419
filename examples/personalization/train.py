"""Train the shop's candidate ranker served by MLServer.

The data is SYNTHETIC (``shop.py``): 4,000 shoppers with hidden tastes, each with a
history of 0-40 events folded into a profile exactly as the Faust app folds them
(``update_profile``), then shown a slate of 20 candidates (``candidates``). Each
candidate is clicked with the hidden probability ``click_probability`` (taste for its
category, quality, popularity, price fit), which is the label; the features are only
what the events reveal (``candidate_rows``), so a short history means a noisy guess,
as in a real shop.

Model: a ``HistGradientBoostingClassifier`` (80 trees of depth <= 4) on the 8 features;
its ``predict_proba`` ranks a slate. Offline check printed at the end: the mean hidden
click probability of the top 5 by the model against the top 5 by popularity, on
held-out shoppers.

Run it with the MLServer venv's Python so the pickle matches the scikit-learn version
the server loads it with (``run.py`` does it on first use)::

    .cache/venv-mlserver/bin/python -m examples.personalization.train --out DIR
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from devtools.mlserver import training_command, write_model_folder
from examples.personalization.shop import (
    FEATURES,
    N_CANDIDATES,
    candidate_rows,
    candidates,
    click_probability,
    make_shoppers,
    next_event,
    update_profile,
)

__all__ = ["MODEL_SETTINGS", "make_slates", "train"]

MODEL_NAME = "ranker"
MODEL_VERSION = "v1"
RUNTIME = Path(__file__).with_name("ranking_runtime.py")

# Server-side adaptive batching: up to 16 slates (320 rows) or 5 ms, whichever first.
MODEL_SETTINGS: dict[str, Any] = {
    "name": MODEL_NAME,
    "implementation": "ranking_runtime.CandidateRanker",
    "parameters": {"uri": "./model.joblib", "version": MODEL_VERSION},
    "max_batch_size": 16,
    "max_batch_time": 0.005,
}


def make_slates(
    n_shoppers: int, seed: int
) -> tuple[list[list[float]], list[int], list[list[float]]]:
    """Rows, click labels and hidden click probabilities (one slate per shopper)."""
    rng = random.Random(seed)
    rows: list[list[float]] = []
    labels: list[int] = []
    truth: list[list[float]] = []
    for shopper in make_shoppers(n_shoppers, seed=seed, prefix="train"):
        profile: dict[str, Any] = {}
        for _ in range(rng.randrange(41)):
            profile = update_profile(profile, *next_event(shopper, rng))
        slate = candidates(profile)
        probabilities = [click_probability(shopper, item) for item in slate]
        rows.extend(candidate_rows(profile, slate))
        labels.extend(1 if rng.random() < p else 0 for p in probabilities)
        truth.append(probabilities)
    return rows, labels, truth


def train(out: Path, n_shoppers: int = 4000, seed: int = 42) -> dict[str, float]:
    """Train the ranker; write ``model.joblib``, ``model-settings.json`` and the runtime.

    Files are written to temporary names and renamed, so an interrupted run never
    leaves a truncated model that a later "already trained?" check would accept.
    """
    import joblib  # type: ignore[import-not-found,unused-ignore]
    import numpy as np  # type: ignore[import-not-found,unused-ignore]
    import sklearn  # type: ignore[import-not-found,unused-ignore]
    from sklearn.ensemble import (  # type: ignore[import-not-found,unused-ignore]
        HistGradientBoostingClassifier,
    )
    from sklearn.metrics import roc_auc_score  # type: ignore[import-not-found,unused-ignore]

    rows, labels, truth = make_slates(n_shoppers, seed)
    split = int(n_shoppers * 0.8) * N_CANDIDATES
    started = time.monotonic()
    model = HistGradientBoostingClassifier(
        max_iter=80, max_depth=4, learning_rate=0.1, early_stopping=False, random_state=seed
    )
    model.fit(rows[:split], labels[:split])
    fit_s = time.monotonic() - started

    test_rows = np.asarray(rows[split:])
    proba = model.predict_proba(test_rows)[:, 1]
    slates = proba.reshape(-1, N_CANDIDATES)
    popularity = test_rows[:, FEATURES.index("log_popularity")].reshape(-1, N_CANDIDATES)
    hidden = np.asarray(truth[split // N_CANDIDATES :])

    def top5(scores: Any) -> float:
        best = np.argsort(-scores, axis=1)[:, :5]
        return float(np.take_along_axis(hidden, best, axis=1).mean())

    metrics = {
        "click_rate": sum(labels) / len(labels),
        "roc_auc": float(roc_auc_score(labels[split:], proba)),
        "top5_model": top5(slates),
        "top5_popularity": top5(popularity),
        "top5_oracle": top5(hidden),
    }

    write_model_folder(out, MODEL_SETTINGS, lambda path: joblib.dump(model, path), [RUNTIME])
    print(
        f"trained {type(model).__name__} (scikit-learn {sklearn.__version__}) on "
        f"{split} candidate rows in {fit_s:.1f}s; click rate {metrics['click_rate']:.1%}; "
        f"holdout ROC AUC {metrics['roc_auc']:.3f}; mean hidden click probability of the "
        f"top 5: model {metrics['top5_model']:.3f}, popularity {metrics['top5_popularity']:.3f}, "
        f"oracle {metrics['top5_oracle']:.3f}; wrote {out}",
        flush=True,
    )
    return metrics


if __name__ == "__main__":
    training_command(train)
