"""Shadow copies: capped, never in the primary's way, compared per pair."""

import asyncio

import pytest
from sklearn.metrics import confusion_matrix

from faust_inference import InferenceRunner, ModelSettings
from faust_inference.exceptions import ServerError
from faust_inference.lifecycle.shadow import Agreement, ShadowTraffic
from tests.unit.fakes import FakeProvider


def test_classification_agreement_and_confusion_match_sklearn():
    primary = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]]
    shadow = [[0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [0.45, 0.55]]
    a = Agreement("classification")
    for p, s in zip(primary, shadow, strict=True):
        a.compare(p, s)
    cls = lambda rows: [int(r[1] > r[0]) for r in rows]  # noqa: E731
    cm = confusion_matrix(cls(primary), cls(shadow), labels=[0, 1])
    assert a.confusion == {f"{i}->{j}": int(cm[i][j]) for i in (0, 1) for j in (0, 1) if cm[i][j]}
    assert a.rate == pytest.approx((cm[0][0] + cm[1][1]) / 5)


def test_regression_embedding_and_text_measures():
    r = Agreement("regression")
    r.compare([1.0], [1.5])
    r.compare(2.0, 1.0)
    assert (r.measure, r.rate) == ("mean_abs_diff", pytest.approx(0.75))
    e = Agreement("embedding")
    e.compare([1.0, 0.0], [1.0, 0.0])
    e.compare([1.0, 0.0], [0.0, 1.0])
    assert (e.measure, e.rate) == ("mean_cosine", pytest.approx(0.5))
    t = Agreement("text_generation")
    t.compare("yes", "yes")
    t.compare("yes", "no")
    assert (t.measure, t.rate) == ("exact_match", 0.5)
    merged = Agreement.from_dict(t.as_dict()).merge(t)
    assert merged.compared == 4 and merged.rate == 0.5


def runner(provider, version, **kw):
    settings = ModelSettings(
        name="m",
        provider="http",
        endpoint="http://127.0.0.1:9",
        version=version,
        batch_size=1,
        retries=0,
        **kw,
    )
    return InferenceRunner(provider, settings)


async def test_a_failing_slow_shadow_is_capped_and_counted_and_the_primary_is_untouched():
    primary_provider = FakeProvider(lambda x: [1 - x, x])
    gate = asyncio.Event()
    shadow_provider = FakeProvider(lambda x: [x, 1 - x])
    shadow_provider.gate = gate  # stalls until released
    primary, shadow = (
        runner(primary_provider, "v1"),
        runner(shadow_provider, "v2", max_concurrency=100),
    )
    traffic = ShadowTraffic(max_in_flight=3)
    try:
        futures = []
        for x in (0.1, 0.2, 0.9, 0.4, 0.6):
            f = primary.submit(x)
            futures.append(f)
            traffic.copy(shadow, "v1", x, f, "classification")
        outputs = [o.output for o in await asyncio.gather(*futures)]
        assert outputs == [
            [0.9, 0.1],
            [0.8, 0.2],
            [0.09999999999999998, 0.9],
            [0.6, 0.4],
            [0.4, 0.6],
        ]
        assert traffic.sent == {("m", "v2"): 3} and traffic.dropped == {("m", "v2"): 2}
        shadow_provider.script.append(ServerError("boom"))
        gate.set()
        for _ in range(50):
            if traffic.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert traffic.in_flight == 0
        assert traffic.failed == {("m", "v2"): 1}
        a = traffic.agreement[("m", "v1", "v2")]
        assert a.compared == 2 and a.agreed == 0  # the shadow flips every answer
    finally:
        traffic.close()
        await primary.aclose()
        await shadow.aclose()


async def test_copies_are_dropped_while_the_loop_is_late_or_the_primary_busy():
    primary, shadow = runner(FakeProvider(), "v1", max_concurrency=1), runner(FakeProvider(), "v2")
    traffic = ShadowTraffic(max_in_flight=10, max_lag_s=0.02)
    try:
        f = primary.submit(1)
        traffic.lag = 0.5  # as measured on a worker running late
        assert not traffic.copy(shadow, "v1", 1, f, "regression", primary)
        traffic.lag = 0.0
        primary.in_flight = 1  # every slot of the primary busy
        assert not traffic.copy(shadow, "v1", 1, f, "regression", primary)
        primary.in_flight = 0
        assert traffic.copy(shadow, "v1", 1, f, "regression", primary)
        assert traffic.dropped == {("m", "v2"): 2} and traffic.sent == {("m", "v2"): 1}
        await f
    finally:
        traffic.close()
        await primary.aclose()
        await shadow.aclose()
