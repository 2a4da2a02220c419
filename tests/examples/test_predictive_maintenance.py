"""The predictive-maintenance example, briefly: real broker, real MLServer, real detector.

Runs the example's own scenario (``examples/predictive_maintenance/run.py``): six pumps,
two of them failing from 35% of a 12-minute replay, against a real
``faust -A examples.predictive_maintenance.app worker``. Checks that every pump's every
window was summarised from all its readings and scored, and that exactly the failing
pumps raised one alert each, after their fault began.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.mlserver import MLServer, copy_models
from examples.predictive_maintenance.plant import WINDOW
from examples.predictive_maintenance.producer import run_pumps
from examples.predictive_maintenance.run import prepare_detector, scenario, topics
from tests.integration.support import unique

MINUTES = 12.0
FAILING = (1, 4)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    """The detector on MLServer, from a copy of its folder: a running example keeps its own."""
    models = copy_models(tmp_path_factory.mktemp("detector"), prepare_detector() / "pump-health")
    with MLServer(models) as server:
        yield server


async def test_alerts_for_the_failing_pumps_and_none_for_the_healthy(kafka, detector, start_worker):
    app_id = unique("maintenance")
    env = {"KAFKA_BROKER": kafka.url, "PUMP_MODEL_URL": detector.url, "PUMP_APP_ID": app_id}
    worker = start_worker("examples.predictive_maintenance.app", env, topics(app_id))
    pumps = run_pumps(6, FAILING, MINUTES)
    run = await scenario(kafka, pumps, MINUTES, speed=240, timeout=60, app_id=app_id)
    worker.assert_alive()

    windows = int(MINUTES * 60 / WINDOW)
    assert run.dead == []
    assert len(run.verdicts) == windows * len(pumps), worker.log()
    assert {(v["pump_id"], v["start"]) for v in run.verdicts} == {
        (p.id, run.start + w * WINDOW) for p in pumps for w in range(windows)
    }
    assert all(v["readings"] == WINDOW / 2 for v in run.verdicts)  # one every 2 s
    assert sorted(a["pump_id"] for a in run.alerts) == ["pump-01", "pump-04"]
    onset = run.start + pumps[FAILING[0]].fault_start  # type: ignore[operator]
    assert all(a["since"] >= onset - WINDOW for a in run.alerts)
