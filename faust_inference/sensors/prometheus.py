"""Prometheus metrics of every model, on the Faust web server's ``/metrics``.

One call turns them on (``install(app, metrics=True)`` does the same)::

    from faust_inference.sensors import prometheus

    prometheus.setup(app, prices={"gpt": Price(input_per_million=0.15, output_per_million=0.6)})

Names follow Prometheus conventions: prefixed ``faust_inference_``, durations
in seconds, counters ending in ``_total``, labelled ``model``, ``version``
and ``provider`` (and ``outcome`` or ``error`` where a count splits):

============================================== =========================================
``faust_inference_requests_total``             requests by outcome (``ok``, ``error``)
``faust_inference_request_duration_seconds``   histogram of one attempt's latency
``faust_inference_in_flight``                  requests awaiting an answer
``faust_inference_batch_size``                 histogram of inputs per request
``faust_inference_errors_total``               failed attempts by ``error`` class
``faust_inference_retries_total``              retries by the ``error`` that caused them
``faust_inference_events_total``               events by outcome (``ok``, ``fallback``,
                                               ``cached``, ``error``, ``dead_letter``)
``faust_inference_event_duration_seconds``     histogram, event read to result (end to end)
``faust_inference_dead_letters_total``         events sent to the DLQ, by ``error``
``faust_inference_fallbacks_total``            inputs answered by a fallback or default
``faust_inference_cache_hits_total``           inputs answered by the result cache
``faust_inference_cache_misses_total``         inputs the cache did not know
``faust_inference_input_tokens_total``         tokens sent, as the provider reports them
``faust_inference_output_tokens_total``        tokens received
``faust_inference_estimated_cost_total``       cost from the price table (its currency)
``faust_inference_circuit_state``              0 closed, 1 half-open, 2 open
``faust_inference_rate_limit_requests_per_second``  the adaptive request rate now
``faust_inference_drift_psi``                  population stability index, by ``feature``
``faust_inference_drift_alerts_total``         drift alerts sent, by ``feature``
``faust_inference_replica_requests_total``     per replica (``replica`` label, with
                                               ``endpoint=[...]``), by ``outcome``
``faust_inference_replica_in_flight``          requests awaiting that replica
``faust_inference_replica_latency_seconds``    its recent mean latency
``faust_inference_replica_up``                 1 in the pool, 0 ejected or probing
``faust_inference_replica_ejections_total``    times it was ejected
``faust_inference_hedges_total``               hedged copies, by ``outcome`` (``sent``,
                                               ``won``: answered first, ``denied``: no budget)
============================================== =========================================

The replica and hedge metrics are read from the live replica pools when
Prometheus scrapes (:func:`~faust_inference.providers.pool.live_pools`), not
counted through hooks: the pool lives below the runner, which sees one
request where the pool may send two.

``prometheus_client`` is imported only when metrics are set up, so the
library works without it; a missing extra is named in the error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from faust_inference.config import ModelSettings, Price
from faust_inference.core.hooks import EventOutcome, InferenceHooks
from faust_inference.exceptions import ConfigurationError, RetriesExhausted
from faust_inference.results import Usage

if TYPE_CHECKING:
    from faust.types import AppT
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from faust_inference.app import ModelRegistry

__all__ = ["PrometheusObserver", "attach", "setup"]

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Seconds: from a cache-speed 1 ms to a minute of retries."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LABELS = ("model", "version", "provider")
_CIRCUIT = {"closed": 0, "half_open": 1, "open": 2}


def _client() -> ModuleType:
    """The ``prometheus_client`` module, or an error that names the extra to install."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigurationError(
            "Prometheus metrics need prometheus_client: pip install 'faust-inference[prometheus]'"
        ) from exc
    return prometheus_client


def error_name(error: BaseException) -> str:
    """The ``error`` label: the class name, of the last error after exhausted retries."""
    if isinstance(error, RetriesExhausted):
        error = error.last_error
    return type(error).__name__


class _Model:
    """The children of every metric for one model, looked up once, not per call."""

    __slots__ = (
        "batch_size",
        "cache_hits",
        "cache_misses",
        "circuit",
        "cost",
        "in_flight",
        "input_tokens",
        "labels",
        "output_tokens",
        "price",
        "rate_limit",
        "request_ok",
        "request_ok_duration",
        "settings",
    )

    def __init__(self, observer: PrometheusObserver, settings: ModelSettings) -> None:
        self.settings = settings
        labels = self.labels = (settings.name, settings.version or "", settings.provider)
        self.in_flight = observer.in_flight.labels(*labels)
        self.batch_size = observer.batch_size.labels(*labels)
        self.request_ok = observer.requests.labels(*labels, "ok")
        self.request_ok_duration = observer.request_duration.labels(*labels, "ok")
        self.cache_hits = observer.cache_hits.labels(*labels)
        self.cache_misses = observer.cache_misses.labels(*labels)
        self.input_tokens = observer.input_tokens.labels(*labels)
        self.output_tokens = observer.output_tokens.labels(*labels)
        self.cost = observer.cost.labels(*labels)
        self.circuit = observer.circuit_state.labels(*labels)
        self.rate_limit = observer.rate_limit.labels(*labels)
        self.price = observer.prices.get(settings.name)


class PrometheusObserver(InferenceHooks):
    """Turns the core's hooks into Prometheus metrics.

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> observer = PrometheusObserver(registry=CollectorRegistry())
        >>> app.inference.hooks.add(observer)  # doctest: +SKIP

    Args:
        registry: where the metrics are registered; a fresh one by default, so
            that two observers in one process never collide.
        prices: what each model costs, by model name, for the cost metric.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        prices: Mapping[str, Price | Mapping[str, float]] | None = None,
    ) -> None:
        pc = _client()
        self.registry: CollectorRegistry = registry or pc.CollectorRegistry()
        self.prices = {
            name: p if isinstance(p, Price) else Price(**p) for name, p in (prices or {}).items()
        }
        self._models: dict[int, _Model] = {}

        def counter(name: str, doc: str, *extra: str) -> Counter:
            c: Counter = pc.Counter(
                f"faust_inference_{name}", doc, [*_LABELS, *extra], registry=self.registry
            )
            return c

        def gauge(name: str, doc: str, *extra: str) -> Gauge:
            g: Gauge = pc.Gauge(
                f"faust_inference_{name}", doc, [*_LABELS, *extra], registry=self.registry
            )
            return g

        def histogram(name: str, doc: str, buckets: Any, *extra: str) -> Histogram:
            h: Histogram = pc.Histogram(
                f"faust_inference_{name}",
                doc,
                [*_LABELS, *extra],
                registry=self.registry,
                buckets=buckets,
            )
            return h

        self.requests = counter("requests", "Requests sent to the model, by outcome.", "outcome")
        self.request_duration = histogram(
            "request_duration_seconds",
            "Latency of one request attempt, in seconds.",
            LATENCY_BUCKETS,
            "outcome",
        )
        self.in_flight = gauge("in_flight", "Requests sent and awaiting an answer.")
        self.batch_size = histogram("batch_size", "Inputs carried by one request.", BATCH_BUCKETS)
        self.errors = counter("errors", "Failed request attempts, by error class.", "error")
        self.retries = counter("retries", "Retries, by the error that caused them.", "error")
        self.events = counter("events", "Stream events finished, by outcome.", "outcome")
        self.event_duration = histogram(
            "event_duration_seconds",
            "End-to-end latency of a stream event, read to result, in seconds.",
            LATENCY_BUCKETS,
            "outcome",
        )
        self.dead_letters = counter(
            "dead_letters", "Events sent to the dead-letter topic, by error class.", "error"
        )
        self.fallbacks = counter(
            "fallbacks", "Inputs answered by a fallback model or default output.", "error"
        )
        self.cache_hits = counter("cache_hits", "Inputs answered by the result cache.")
        self.cache_misses = counter("cache_misses", "Inputs the result cache did not hold.")
        self.input_tokens = counter("input_tokens", "Tokens sent, as the provider reports them.")
        self.output_tokens = counter("output_tokens", "Tokens received from the provider.")
        self.cost = counter(
            "estimated_cost", "Estimated cost from the price table, in its currency."
        )
        self.circuit_state = gauge(
            "circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open."
        )
        self.rate_limit = gauge(
            "rate_limit_requests_per_second", "The adaptive request rate limit now."
        )
        self.drift_psi = gauge(
            "drift_psi", "Population stability index against the reference.", "feature"
        )
        self.drift_alerts = counter("drift_alerts", "Drift alerts sent.", "feature")
        self.registry.register(_ReplicaCollector())

    def _model(self, settings: ModelSettings) -> _Model:
        model = self._models.get(id(settings))
        if model is None or model.settings is not settings:
            model = self._models[id(settings)] = _Model(self, settings)
        return model

    # -- requests (called by the runner) ---------------------------------------------

    @override
    def on_request_start(self, settings: ModelSettings, batch_size: int) -> None:
        m = self._model(settings)
        m.in_flight.inc()
        m.batch_size.observe(batch_size)

    @override
    def on_request_end(
        self,
        settings: ModelSettings,
        batch_size: int,
        duration_s: float,
        error: BaseException | None,
        usage: Usage | None,
    ) -> None:
        m = self._model(settings)
        m.in_flight.dec()
        if error is None:
            m.request_ok.inc()
            m.request_ok_duration.observe(duration_s)
            if usage is not None:
                m.input_tokens.inc(usage.input_tokens)
                m.output_tokens.inc(usage.output_tokens)
            if m.price is not None:
                tokens = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
                m.cost.inc(m.price.of(*tokens, requests=1))
            return
        outcome = "error" if isinstance(error, Exception) else "cancelled"
        self.requests.labels(*m.labels, outcome).inc()
        self.request_duration.labels(*m.labels, outcome).observe(duration_s)
        if outcome == "error":
            self.errors.labels(*m.labels, error_name(error)).inc()

    @override
    def on_retry(self, settings: ModelSettings, error: BaseException, delay_s: float) -> None:
        self.retries.labels(*self._model(settings).labels, error_name(error)).inc()

    @override
    def on_fallback(self, settings: ModelSettings, error: BaseException) -> None:
        self.fallbacks.labels(*self._model(settings).labels, error_name(error)).inc()

    @override
    def on_circuit_change(self, settings: ModelSettings, state: str) -> None:
        self._model(settings).circuit.set(_CIRCUIT.get(state, 0))

    @override
    def on_rate_limit_change(self, settings: ModelSettings, requests_per_second: float) -> None:
        self._model(settings).rate_limit.set(requests_per_second)

    # -- events, cache, drift (called by the pipeline, the cache, the drift monitor) --

    @override
    def on_cache(self, settings: ModelSettings, hit: bool) -> None:
        m = self._model(settings)
        (m.cache_hits if hit else m.cache_misses).inc()

    @override
    def on_event_done(
        self, settings: ModelSettings, outcome: EventOutcome, latency_s: float
    ) -> None:
        labels = self._model(settings).labels
        self.events.labels(*labels, outcome).inc()
        self.event_duration.labels(*labels, outcome).observe(latency_s)

    @override
    def on_dead_letter(self, settings: ModelSettings, error: BaseException) -> None:
        self.dead_letters.labels(*self._model(settings).labels, error_name(error)).inc()

    @override
    def on_drift(self, settings: ModelSettings, feature: str, psi: float, alert: bool) -> None:
        labels = self._model(settings).labels
        self.drift_psi.labels(*labels, feature).set(psi)
        if alert:
            self.drift_alerts.labels(*labels, feature).inc()

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        data: bytes = _client().generate_latest(self.registry)
        return data


class _ReplicaCollector:
    """Replica and hedge metrics of every live pool, read at scrape time."""

    def describe(self) -> list[Any]:
        return []  # unchecked: the families depend on which pools exist

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from faust_inference.providers.pool import live_pools

        labels = [*_LABELS, "replica"]
        requests = CounterMetricFamily(
            "faust_inference_replica_requests",
            "Requests sent to one replica, by outcome.",
            labels=[*labels, "outcome"],
        )
        in_flight = GaugeMetricFamily(
            "faust_inference_replica_in_flight", "Requests awaiting one replica.", labels=labels
        )
        latency = GaugeMetricFamily(
            "faust_inference_replica_latency_seconds",
            "Recent mean latency of one replica's answers, in seconds.",
            labels=labels,
        )
        up = GaugeMetricFamily(
            "faust_inference_replica_up", "1 in the pool, 0 ejected or probing.", labels=labels
        )
        ejections = CounterMetricFamily(
            "faust_inference_replica_ejections", "Times one replica was ejected.", labels=labels
        )
        hedges = CounterMetricFamily(
            "faust_inference_hedges",
            "Hedged copies of slow requests: sent, won (answered first), denied (no budget).",
            labels=[*_LABELS, "outcome"],
        )
        for pool in live_pools():
            s = pool.settings
            model = [s.name, s.version or "", s.provider] if s else ["", "", ""]
            for r in pool.replicas:
                at = [*model, r.url]
                requests.add_metric([*at, "ok"], r.answers)
                requests.add_metric([*at, "error"], r.failures)
                requests.add_metric([*at, "cancelled"], r.cancelled)
                in_flight.add_metric(at, r.in_flight)
                latency.add_metric(at, r.latency)
                up.add_metric(at, 1 if r.state == "up" else 0)
                ejections.add_metric(at, r.ejections)
            if pool.hedge is not None:
                for outcome in ("sent", "won", "denied"):
                    hedges.add_metric([*model, outcome], getattr(pool.hedges, outcome))
        yield from (requests, in_flight, latency, up, ejections, hedges)


def setup(
    app: AppT,
    *,
    prices: Mapping[str, Price | Mapping[str, float]] | None = None,
    registry: CollectorRegistry | None = None,
    path: str = "/metrics",
    faust_metrics: bool = False,
) -> PrometheusObserver:
    """Export every model's metrics on the app's web server, at ``path``.

    Calling it again returns the observer already set up.

    Example:
        >>> observer = setup(app, prices={"fraud": Price(per_request=0.0001)})  # doctest: +SKIP

    Args:
        app: a Faust app; :func:`~faust_inference.install` is applied if it was not.
        prices: what each model costs, by model name, for
            ``faust_inference_estimated_cost_total``.
        registry: the Prometheus registry to use; ``prometheus_client.REGISTRY``
            by default, so that other metrics of the process show up too.
        path: where the web server serves the metrics.
        faust_metrics: also export Faust's own stream metrics (Faust's
            Prometheus monitor, prefixed ``faust_``; its latencies are in ms).

    Raises:
        ConfigurationError: ``prometheus_client`` is not installed.
    """
    from faust_inference.app import install

    return attach(
        app,
        install(app),
        prices=prices,
        registry=registry,
        path=path,
        faust_metrics=faust_metrics,
    )


def attach(
    app: AppT,
    models: ModelRegistry,
    *,
    prices: Mapping[str, Price | Mapping[str, float]] | None = None,
    registry: CollectorRegistry | None = None,
    path: str = "/metrics",
    faust_metrics: bool = False,
) -> PrometheusObserver:
    """:func:`setup` for an app whose registry is already made (``install(metrics=True)``).

    Takes the registry instead of making it, so that ``install`` can call it
    without this module calling ``install`` back.
    """
    existing = getattr(app, "_faust_inference_prometheus", None)
    if isinstance(existing, PrometheusObserver):
        return existing
    pc = _client()
    observer = PrometheusObserver(registry=registry or pc.REGISTRY, prices=prices)
    models.hooks.add(observer)
    vars(app)["_faust_inference_prometheus"] = observer
    if faust_metrics:
        from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(observer.registry, "faust"))

    async def metrics(self: Any, request: Any) -> Any:
        from aiohttp.web import Response

        return Response(body=observer.render(), headers={"Content-Type": pc.CONTENT_TYPE_LATEST})

    app.page(path)(metrics)
    if not app.conf.web_enabled:
        logger.warning(
            "metrics are served at %s by the Faust web server, which is disabled "
            "(web_enabled=False or --without-web)",
            path,
        )
    return observer
