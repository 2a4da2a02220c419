"""Prometheus metrics of the lifecycle: traffic shares, shadow agreement, evaluation.

Request and event metrics already carry a ``version`` label (each version
has its own settings, see :mod:`faust_inference.sensors.prometheus`). This
collector adds, on the same registry, what only the lifecycle knows, as this
worker sees it (sum over workers in PromQL):

* ``faust_inference_traffic_share{model,version}``: the routing's share, 0-1;
* ``faust_inference_shadow_copies_total{model,version,outcome}``: ``sent``,
  ``dropped`` (at the in-flight cap), ``failed``;
* ``faust_inference_shadow_agreement{model,primary,shadow,measure}`` and
  ``faust_inference_shadow_compared_total{model,primary,shadow}``;
* ``faust_inference_shadow_confusion_total{model,primary,shadow,primary_class,shadow_class}``;
* ``faust_inference_evaluation{model,version,metric}``: accuracy, precision,
  recall, f1, log_loss, mae, rmse over every labelled prediction since start;
* ``faust_inference_evaluation_unmatched_total{model}``: predictions whose
  label never came within the TTL.

Example::

    from faust_inference.sensors import prometheus
    prometheus.setup(app)          # the lifecycle adds its collector on first publish
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["LifecycleCollector", "attach"]


class LifecycleCollector:
    """A Prometheus collector reading a :class:`~faust_inference.lifecycle.plane.Lifecycle`.

    Args:
        plane: the worker's lifecycle.
    """

    def __init__(self, plane: Any) -> None:
        self.plane = plane

    def describe(self) -> list[Any]:
        """No fixed description: metrics are produced at collection time."""
        return []

    def collect(self) -> Iterator[Any]:
        """The lifecycle's metrics now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        plane = self.plane
        share = GaugeMetricFamily(
            "faust_inference_traffic_share",
            "Share of traffic routed to each version (0-1).",
            labels=["model", "version"],
        )
        for name in list(plane.registry.models):
            for version, pct in plane.state(name).arms():
                share.add_metric([name, version], pct / 100)
        yield share
        shadow = plane.shadow
        copies = CounterMetricFamily(
            "faust_inference_shadow_copies",
            "Shadow copies by outcome: sent, dropped at the in-flight cap, failed.",
            labels=["model", "version", "outcome"],
        )
        for outcome, counts in (
            ("sent", shadow.sent),
            ("dropped", shadow.dropped),
            ("failed", shadow.failed),
        ):
            for (model, version), n in counts.items():
                copies.add_metric([model, version, outcome], n)
        yield copies
        agreement = GaugeMetricFamily(
            "faust_inference_shadow_agreement",
            "Agreement rate, mean |difference|, mean cosine or exact-match rate of the shadow.",
            labels=["model", "primary", "shadow", "measure"],
        )
        compared = CounterMetricFamily(
            "faust_inference_shadow_compared",
            "Pairs of primary and shadow answers compared.",
            labels=["model", "primary", "shadow"],
        )
        confusion = CounterMetricFamily(
            "faust_inference_shadow_confusion",
            "Classification pairs by primary class and shadow class.",
            labels=["model", "primary", "shadow", "primary_class", "shadow_class"],
        )
        for (model, primary, other), a in list(shadow.agreement.items()):
            if a.rate is not None:
                agreement.add_metric([model, primary, other, a.measure], a.rate)
            compared.add_metric([model, primary, other], a.compared)
            for cell, n in a.confusion.items():
                p, s = cell.split("->", 1)
                confusion.add_metric([model, primary, other, p, s], n)
        yield agreement
        yield compared
        yield confusion
        evaluation = GaugeMetricFamily(
            "faust_inference_evaluation",
            "Evaluation against labels since start, per version and metric.",
            labels=["model", "version", "metric"],
        )
        unmatched = CounterMetricFamily(
            "faust_inference_evaluation_unmatched",
            "Predictions whose label did not arrive within the TTL.",
            labels=["model"],
        )
        for model, ev in list(plane.evaluations.items()):
            for version in list(ev.total):
                for metric, value in ev.metrics(version).items():
                    if metric != "n":
                        evaluation.add_metric([model, version, metric], value)
            unmatched.add_metric([model], ev.unmatched)
        yield evaluation
        yield unmatched


def attach(plane: Any) -> bool:
    """Register the collector on the app's Prometheus observer, once; False without one."""
    if getattr(plane, "_metrics_attached", False):
        return True
    for observer in plane.registry.hooks.observers:
        registry = getattr(observer, "registry", None)
        if registry is not None and hasattr(registry, "register"):
            registry.register(LifecycleCollector(plane))
            plane._metrics_attached = True
            return True
    return False
