"""``faust -A app inference ...`` as a user runs it, against the real MLServer."""

import os
import subprocess
import sys
from pathlib import Path

from examples.fraud_detection.train import make_transactions

FAUST = str(Path(sys.executable).parent / "faust")
REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, model_url):
    env = {**os.environ, "FRAUD_MODEL_URL": model_url, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [FAUST, "-A", "examples.fraud_detection.app", "inference", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_list_shows_the_registered_models(mlserver):
    done = run_cli("list", model_url=mlserver.url)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.strip().splitlines()[-2:]
    assert header.split()[:3] == ["name", "provider", "endpoint"]
    assert row.split()[:3] == ["fraud", "kserve", mlserver.url]


def test_predict_calls_the_model(mlserver):
    rows, _ = make_transactions(1, seed=5)
    done = run_cli("predict", "fraud", str(rows[0]), model_url=mlserver.url)
    assert done.returncode == 0, done.stderr
    p_legit, p_fraud = (float(x) for x in done.stdout.strip("[]\n ").split(","))
    assert abs(p_legit + p_fraud - 1) < 1e-9


def test_predict_reports_bad_input_without_a_traceback(mlserver):
    done = run_cli("predict", "fraud", "[1, 2]", model_url=mlserver.url)
    assert done.returncode != 0
    assert "InvalidInput: features: expected a row of shape [10], got shape [2]" in done.stderr
    assert "Traceback" not in done.stderr
