"""Train the wide models ``benchmarks/wire.py`` serves with MLServer: ``wide256``, ``wide4096``.

Run with the MLServer virtualenv's Python (``devtools.mlserver.prepare_model``
does): ``python benchmarks/wire_model.py --out .cache/wire-models/wide256``.
The width is the folder name's number. A logistic regression on random
features: the model's cost is small and flat, so what the benchmark sees is
the wire format's.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import joblib  # type: ignore[import-not-found]
import numpy as np  # type: ignore[import-not-found]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    found = re.search(r"(\d+)$", out.name)
    if found is None:
        raise SystemExit(f"the folder name must end in the width, got {out.name!r}")
    width = int(found.group(1))
    rng = np.random.default_rng(width)
    x = rng.random((400, width))
    y = (x[:, : min(8, width)].sum(axis=1) > min(8, width) / 2).astype(int)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=200).fit(x, y), out / "model.joblib")
    settings = {
        "name": out.name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {
            "uri": "./model.joblib",
            "version": "v1",
            "extra": {"predict_fn": "predict_proba"},
        },
    }
    (out / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")


if __name__ == "__main__":
    main()
