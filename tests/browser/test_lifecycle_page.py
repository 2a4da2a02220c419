"""The /inference/ page in a real browser (Debian's chromium driven by Playwright).

A real worker with two versions of one model serves the page; the model
server is the fake endpoint (a test double: the page is under test). Changes
are made over the web API with and without the bearer token.
"""

import asyncio
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devtools.fake_endpoint import FakeEndpoint
from tests.integration.lifecycle.support import (
    APP,
    Collector,
    Worker,
    lifecycle_env,
    produce,
    wait_applied,
)
from tests.integration.support import unique

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "t0ken-for-the-browser-test"
SHOTS = Path(__file__).resolve().parents[2] / ".cache" / "screenshots"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, token=None):
    req = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


async def wait_page(url, worker, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        if await asyncio.to_thread(answers, url):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{url} never answered\n{worker.log()}")


def evaluated(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["evaluation"]["versions"]


async def wait_evaluated(url, n, worker, timeout=30.0):
    """Until every labelled prediction is counted in the published figures."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        versions = await asyncio.to_thread(evaluated, url)
        if sum(m.get("n", 0) for m in versions.values()) >= n:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{n} labelled predictions never counted: {versions}")


async def test_the_page_shows_versions_traffic_and_changes(kafka, tmp_path):
    from playwright.async_api import async_playwright

    port = free_port()
    async with FakeEndpoint(latency=0.002) as v1, FakeEndpoint(latency=0.004) as v2:
        # version_in_path=False: the fake serves no /versions/{v}/ready for the
        # start-up readiness check.
        options = '{"input_name": "features", "shape": [10], "version_in_path": false}'
        labels = unique("labels")
        kafka.create_topic(labels, partitions=4)  # co-partitioned with the scored topic
        env = lifecycle_env(
            kafka,
            v1.url,
            V2_URL=v2.url,
            MODEL_REMOTE_NAME="fake-model",
            WEB_PORT=str(port),
            WEB_TOKEN=TOKEN,
            MODEL_OPTIONS=options,
            LABELS_TOPIC=labels,
        )
        worker = Worker(APP, env, tmp_path, "web").start()
        base = f"http://127.0.0.1:{port}/inference"
        try:
            await wait_page(f"{base}/", worker)
            assert (
                post(f"{base}/models/model/split/", '{"weights": {"v1": 50, "v2": 50}}')[0] == 401
            )
            assert (
                post(
                    f"{base}/models/model/split/",
                    '{"weights": {"v1": 50, "v2": 50}}',
                    token="wrong-token-0123456789",
                )[0]
                == 401
            )
            status, body = post(
                f"{base}/models/model/split/",
                '{"weights": {"v1": 70, "v2": 30}, "reason": "try v2"}',
                TOKEN,
            )
            assert status == 200, body
            status, body = post(f"{base}/models/model/shadow/", '{"version": "v1"}', TOKEN)
            assert status == 400 and "no version" not in body  # v1 is the default: refused
            await wait_applied([worker], 1)
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"]) as seen:
                events = [{"id": f"p{i}", "x": [0.2] * 10} for i in range(400)]
                await produce(kafka.bootstrap, env["IN_TOPIC"], events, key=lambda e: e["id"])
                out = seen.records[env["OUT_TOPIC"]]
                await seen.wait_for(lambda: len(out) >= 400, 60, workers=[worker])
            truth = [{"id": e["id"], "label": i % 2} for i, e in enumerate(events)]
            await produce(kafka.bootstrap, labels, truth, key=lambda e: e["id"])
            await wait_evaluated(f"{base}/models/model/", 400, worker)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = await browser.new_page(viewport={"width": 1200, "height": 900})
                await page.goto(f"{base}/")
                text = await page.inner_text("body")
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / "inference-page.png"), full_page=True)
                models = await page.evaluate(
                    "async () => (await fetch('/inference/models/')).json()"
                )
                await browser.close()
        finally:
            worker.stop()

    assert "Models" in text and "model" in text
    assert "70%" in text and "30%" in text
    assert "split v1=70 v2=30 (try v2)" in text and "web" in text
    assert "Read only" not in text
    assert "Evaluation against labels" in text and "5 s windows" in text
    assert "since start" in text and "UTC" in text  # per-version totals, then each window
    report = models[0]
    assert report["split"] == {"v1": 70.0, "v2": 30.0}
    served = report["versions"]["v1"]["requests"] + report["versions"]["v2"]["requests"]
    assert served > 0 and report["versions"]["v2"]["requests"] > 0
    counted = sum(m["n"] for m in report["evaluation"]["versions"].values())
    in_windows = sum(w["n"] for ws in report["evaluation"]["windows"].values() for w in ws)
    assert counted == in_windows == 400
