"""The Prometheus observer: a runner's hooks move the metrics they should."""

import random
import sys

import faust
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from faust_inference import ModelSettings, Predictions, ServerError, Usage
from faust_inference.config import Price
from faust_inference.core.hooks import HooksDelegate
from faust_inference.core.runner import InferenceRunner
from faust_inference.sensors import prometheus
from faust_inference.sensors.prometheus import PrometheusObserver
from tests.unit.fakes import FakeClock, FakeProvider


def samples(observer: PrometheusObserver) -> dict[tuple[str, frozenset], float]:
    text = observer.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(data, name, **labels):
    base = {"model": "m", "version": "v1", "provider": "fake"}
    return data.get((name, frozenset({**base, **labels}.items())), 0.0)


class UsageProvider(FakeProvider):
    async def infer(self, inputs):
        predictions = await super().infer(inputs)
        return Predictions(predictions.outputs, usage=Usage(10 * len(inputs), 2 * len(inputs)))


async def test_requests_retries_tokens_and_cost_are_counted():
    observer = PrometheusObserver(
        registry=CollectorRegistry(),
        prices={"m": {"input_per_million": 1000.0, "output_per_million": 5000.0}},
    )
    hooks = HooksDelegate()
    hooks.add(observer)
    provider = UsageProvider()
    provider.script.append(ServerError("down", status=503))
    settings = ModelSettings(
        name="m", provider="fake", version="v1", batch_size=4, batch_timeout=0.0, retries=2
    )
    runner = InferenceRunner(
        provider, settings, clock=FakeClock(), rng=random.Random(0), hooks=hooks
    )
    await runner.predict_many(range(4))
    data = samples(observer)
    assert value(data, "faust_inference_requests_total", outcome="ok") == 1
    assert value(data, "faust_inference_requests_total", outcome="error") == 1
    assert value(data, "faust_inference_errors_total", error="ServerError") == 1
    assert value(data, "faust_inference_retries_total", error="ServerError") == 1
    assert value(data, "faust_inference_request_duration_seconds_count", outcome="ok") == 1
    assert value(data, "faust_inference_batch_size_sum") == 8  # two attempts of 4 inputs
    assert value(data, "faust_inference_in_flight") == 0
    assert value(data, "faust_inference_input_tokens_total") == 40
    assert value(data, "faust_inference_output_tokens_total") == 8
    assert value(data, "faust_inference_estimated_cost_total") == pytest.approx(
        (40 * 1000 + 8 * 5000) / 1e6
    )
    await runner.aclose()


def test_event_cache_dead_letter_and_drift_hooks():
    observer = PrometheusObserver(registry=CollectorRegistry())
    s = ModelSettings(name="m", provider="fake", version="v1")
    observer.on_event_done(s, "ok", 0.02)
    observer.on_event_done(s, "dead_letter", 0.5)
    observer.on_cache(s, True)
    observer.on_cache(s, False)
    observer.on_cache(s, False)
    observer.on_dead_letter(s, ValueError("bad"))
    observer.on_fallback(s, ServerError("down"))
    observer.on_circuit_change(s, "open")
    observer.on_rate_limit_change(s, 12.5)
    observer.on_drift(s, "amount", 0.31, True)
    data = samples(observer)
    assert value(data, "faust_inference_events_total", outcome="ok") == 1
    assert value(data, "faust_inference_event_duration_seconds_sum", outcome="dead_letter") == 0.5
    assert value(data, "faust_inference_cache_hits_total") == 1
    assert value(data, "faust_inference_cache_misses_total") == 2
    assert value(data, "faust_inference_dead_letters_total", error="ValueError") == 1
    assert value(data, "faust_inference_fallbacks_total", error="ServerError") == 1
    assert value(data, "faust_inference_circuit_state") == 2
    assert value(data, "faust_inference_rate_limit_requests_per_second") == 12.5
    assert value(data, "faust_inference_drift_psi", feature="amount") == 0.31
    assert value(data, "faust_inference_drift_alerts_total", feature="amount") == 1


def test_setup_adds_the_observer_and_the_page_once():
    app = faust.App("metrics-unit", broker="kafka://127.0.0.1:1", store="memory://")
    registry = CollectorRegistry()
    observer = prometheus.setup(app, registry=registry, prices={"m": Price(per_request=0.01)})
    assert prometheus.setup(app, registry=registry) is observer
    assert app.inference.hooks.observers == [observer]
    assert any(getattr(v, "view_path", None) == "/metrics" for v in app.web.views.values())


def test_install_with_metrics_sets_up_prometheus(monkeypatch):
    registry = CollectorRegistry()
    real_attach = prometheus.attach
    monkeypatch.setattr(
        prometheus, "attach", lambda app, models: real_attach(app, models, registry=registry)
    )
    from faust_inference import install

    app = faust.App("metrics-unit-2", broker="kafka://127.0.0.1:1", store="memory://")
    models = install(app, metrics=True)
    assert app.inference is models
    assert [type(o) for o in models.hooks.observers] == [PrometheusObserver]


def test_faust_metrics_adds_faust_s_own_monitor_on_the_same_registry():
    from faust.sensors.prometheus import PrometheusMonitor

    app = faust.App("metrics-unit-3", broker="kafka://127.0.0.1:1", store="memory://")
    registry = CollectorRegistry()
    observer = prometheus.setup(app, registry=registry, faust_metrics=True)
    assert isinstance(app.monitor, PrometheusMonitor)
    names = {f.name for f in text_string_to_metric_families(observer.render().decode())}
    assert "faust_messages_received" in names and "faust_inference_requests" in names


def test_without_prometheus_client_the_error_names_the_extra(monkeypatch):
    from faust_inference import ConfigurationError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(ConfigurationError, match=r"faust-inference\[prometheus\]"):
        PrometheusObserver()
