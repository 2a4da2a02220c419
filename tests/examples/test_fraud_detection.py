"""The README's main example, run as a person runs it: Kafka, MLServer, a worker, a producer.

``examples.fraud_detection.run`` starts its own broker and model server on free ports,
so this is the README command minus the virtualenv step (which ``scripts/test.sh``
has already done).
"""

from __future__ import annotations

import re
import subprocess
import sys

from devtools.worker import REPO_ROOT


def test_the_main_example_gives_every_transaction_a_verdict() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.fraud_detection.run", "--count", "200", "--rate", "200"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    verdicts = re.search(r"(\d+)/(\d+) transactions have a verdict", output)
    assert verdicts is not None, output[-3000:]
    assert verdicts.group(1) == verdicts.group(2) == "200", verdicts.group(0)
    assert "faust_inference_events_total" in output  # the metrics excerpt it prints
    assert "stopped the worker, MLServer and Kafka" in output
