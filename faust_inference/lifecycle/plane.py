"""The lifecycle of an app's models inside a worker: versions, routing, shadow, rollouts.

:func:`lifecycle` attaches one :class:`Lifecycle` to a Faust app (after
:func:`~faust_inference.install`). It declares the two GlobalTables (control
and stats, see :mod:`~faust_inference.lifecycle.control`) at import time, as
Faust requires, and three timers:

* every 0.25 s, each worker compiles the routing state of every model it
  knows from its control table, logging each revision it applies (with the
  delay since the change was written), so a change takes effect within a
  fraction of a second of reaching the table;
* every second, each worker publishes its figures (requests, errors,
  latency, shadow agreement, evaluation windows) to the stats table;
* every second, the leader worker judges running rollouts and writes the
  resulting control records (advance, promote, rollback).

Routing an event (:meth:`Lifecycle.route`) is a dictionary lookup and one
hash: the compiled state is cached per model and replaced by the timer.

Example::

    install(app)
    fraud = app.model("fraud", provider="kserve", endpoint="http://a:8080", version="v1")
    lc = lifecycle(app)
    lc.add_version(fraud, "v2", endpoint="http://b:8080")
    version, variant, runner = lc.route("fraud", b"customer-42")
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.core.runner import InferenceRunner, Outcome
from faust_inference.exceptions import ConfigurationError
from faust_inference.lifecycle import rollout as rollouts
from faust_inference.lifecycle.control import CONTROL_TABLE, STATS_TABLE, ControlClient
from faust_inference.lifecycle.routing import Assigner, Change, RoutingState, Variant, key_bytes
from faust_inference.lifecycle.shadow import Agreement, ShadowTraffic
from faust_inference.lifecycle.stats import Figures, VersionStatsObserver
from faust_inference.lifecycle.versions import ModelVersions

__all__ = ["Lifecycle", "lifecycle", "stream_router"]

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 0.25
"""Seconds between two looks at the control table."""
PUBLISH_INTERVAL = 1.0
STATS_TOPIC_CONFIG = {"segment.ms": "300000", "min.cleanable.dirty.ratio": "0.1"}
"""The stats changelog's settings: small segments, compacted soon."""
"""Seconds between two publications of a worker's figures."""


def lifecycle(app: Any, *, shadow_in_flight: int = 32, shadow_max_lag_s: float = 0.02) -> Lifecycle:
    """The app's :class:`Lifecycle`, created on first call (at import, before the worker starts).

    Args:
        app: a Faust app, after :func:`~faust_inference.install`.
        shadow_in_flight: shadow copies awaiting an answer at once, per worker.
        shadow_max_lag_s: shadow copies are dropped while the worker's event
            loop runs later than this (see :class:`ShadowTraffic`).
    """
    existing = getattr(app, "inference_lifecycle", None)
    if isinstance(existing, Lifecycle):
        return existing
    registry = getattr(app, "inference", None)
    if registry is None:
        raise ConfigurationError("call faust_inference.install(app) before lifecycle(app)")
    plane = Lifecycle(
        app, registry, shadow_in_flight=shadow_in_flight, shadow_max_lag_s=shadow_max_lag_s
    )
    app.inference_lifecycle = plane
    return plane


Route = Callable[[Any, Any], tuple["asyncio.Future[Outcome]", ModelSettings, str | None]]


def stream_router(app: Any, model: Any) -> Route | None:
    """How ``infer()`` submits each event of ``model``: to the version routing picks.

    None when the app has no lifecycle (the model's own runner answers
    everything, as before). Besides choosing the version, the route copies
    sampled events to the shadow version and records predictions for live
    evaluation; neither is awaited.
    """
    pinned = getattr(model, "pinned_version", None)
    if pinned is not None:
        runner = model.runner

        def route_pinned(envelope: Any, value: Any) -> tuple[Any, ModelSettings, str | None]:
            return runner.submit(value, backlog=envelope.backlog), runner.settings, "pinned"

        return route_pinned
    plane = getattr(app, "inference_lifecycle", None)
    if not isinstance(plane, Lifecycle):
        return None
    name, cache, own, task = model.name, model.cache, model.runner, model.settings.task
    shadow = plane.shadow

    def route(envelope: Any, value: Any) -> tuple[Any, ModelSettings, str | None]:
        key = key_bytes(envelope.key)
        position = key
        if key is None and envelope.offset is not None:
            # Documented fallback: no key, so assign by position, stable on replay.
            position = f"{envelope.lane}@{envelope.offset}".encode()
        version, variant, runner = plane.route(name, position)
        if runner is own and cache is not None:
            future = cache.submit(value, envelope.partition, backlog=envelope.backlog)
        else:
            future = runner.submit(value, backlog=envelope.backlog)
        copy_to = plane.shadow_of(name, position)
        if copy_to is not None and copy_to.settings.version != runner.settings.version:
            shadow.copy(copy_to, version, value, future, task, runner)
        evaluation = plane.evaluations.get(name)
        if evaluation is not None and key is not None:
            topic = getattr(envelope.lane, "topic", None)
            if evaluation.check_source is not None and isinstance(topic, str):
                evaluation.check_source(topic)
            partition = envelope.partition

            def record(f: asyncio.Future[Outcome], key: bytes = key) -> None:
                # Written to the scored event's partition of the pending table,
                # which the labels topic shares (co-partitioned): its label
                # reaches the worker that holds it, now or after a rebalance.
                if not f.cancelled() and f.exception() is None:
                    evaluation.predicted(key, version, f.result().output, partition=partition)

            future.add_done_callback(record)
        return future, runner.settings, variant

    return route


class Lifecycle:
    """Versions and routing of every model of one app, in one worker.

    Attributes:
        observer: request figures per version (a hooks observer).
        shadow: shadow copies and their agreement.
        applied: model name -> (revision, seconds from the change to this
            worker applying it), for the switch-time measurement.
    """

    def __init__(
        self,
        app: Any,
        registry: Any,
        *,
        shadow_in_flight: int = 32,
        shadow_max_lag_s: float = 0.02,
    ) -> None:
        self.app = app
        self.registry = registry
        self.observer = VersionStatsObserver()
        registry.hooks.add(self.observer)
        self.shadow = ShadowTraffic(shadow_in_flight, shadow_max_lag_s)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.applied: dict[str, tuple[int, float]] = {}
        self.started_at = time.time()
        """Changes written before this worker started are loaded, not applied live."""
        self.evaluations: dict[str, Any] = {}
        """model name -> its live evaluation, which publishes its windows."""
        self._assigners: dict[str, Assigner] = {}
        self.web_token: Any = None
        """The bearer token of web changes (see :func:`faust_inference.web.setup`)."""
        self._last_counts: dict[tuple[str, str], tuple[int, float]] = {}
        self._client: ControlClient | None = None
        self.control = app.GlobalTable(
            CONTROL_TABLE,
            partitions=1,
            recovery_buffer_size=1,
            help="faust-inference: routing state of every model (control topic)",
        )
        self.stats = app.GlobalTable(
            STATS_TABLE,
            partitions=1,
            recovery_buffer_size=1,
            help="faust-inference: figures of each worker per model",
            # Every worker writes a record per model each second: roll and
            # compact segments often, so that recovery reads little.
            extra_topic_configs=STATS_TOPIC_CONFIG,
        )

        async def recovered() -> None:
            self.refresh()

        self.control.on_recover(recovered)
        self._recovered = recovered  # the table may hold its callbacks weakly
        app.timer(WATCH_INTERVAL)(self._watch)
        app.timer(PUBLISH_INTERVAL)(self._publish)
        app.timer(PUBLISH_INTERVAL, on_leader=True)(self._judge_rollouts)

        async def close(sender: Any, **kwargs: Any) -> None:
            self.shadow.close()
            if self._client is not None:
                await self._client.aclose()

        app.on_before_shutdown.connect(close)
        self._close = close

    # -- versions ------------------------------------------------------------------

    def model_versions(self, model: Any) -> ModelVersions:
        """The versions of ``model`` (a RemoteModel or its name)."""
        m = self.registry[model] if isinstance(model, str) else model
        versions: ModelVersions = m.versions
        return versions

    def add_version(self, model: Any, version: str, **overrides: Any) -> InferenceRunner:
        """Add a version to ``model``; settings not given are inherited from the model."""
        return self.model_versions(model).add(version, **overrides)

    # -- routing (hot path) --------------------------------------------------------

    def state(self, model: str) -> RoutingState:
        """``model``'s routing state as this worker sees it."""
        return self._assigner(model).state

    def route(self, model: str, key: bytes | None) -> tuple[str, Variant, InferenceRunner]:
        """The version, arm and runner for an event with ``key`` (see :func:`key_bytes`)."""
        assigner = self._assigner(model)
        version, variant = assigner.assign(key)
        versions = self.model_versions(model)
        runner = versions.runners.get(version)
        if runner is None:  # a version this worker's code does not register
            return versions.default, "default", versions.runners[versions.default]
        return version, variant, runner

    def shadow_of(self, model: str, key: bytes | None) -> InferenceRunner | None:
        """The shadow version's runner if this event is to be copied to it."""
        state = self._assigner(model).state
        if not state.wants_shadow(key):
            return None
        assert state.shadow is not None
        versions = self.model_versions(model)
        if state.shadow not in versions.runners:
            return None
        return versions.shadow_runner(state.shadow)

    def _assigner(self, model: str) -> Assigner:
        assigner = self._assigners.get(model)
        if assigner is None:
            assigner = self._compile(model)
        return assigner

    def _compile(self, model: str) -> Assigner:
        versions = self.model_versions(model)
        raw = self.control.get(model)
        if raw is None:
            state = RoutingState.initial(model, versions.default, versions=versions.names)
        else:
            state = RoutingState.model_validate(raw).with_versions(versions.names)
        assigner = self._assigners[model] = Assigner(state)
        if raw is not None and self.applied.get(model, (None,))[0] != state.revision:
            delay = time.time() - state.changed_at
            last = state.history[-1].describe() if state.history else "-"
            if state.changed_at >= self.started_at:
                logger.info(
                    "model %r: applied routing revision %d (%s) %.3fs after it was written",
                    model,
                    state.revision,
                    last,
                    delay,
                )
            else:  # recovered at start-up: not a switch time
                logger.info(
                    "model %r: routing revision %d (%s), written %.0fs ago",
                    model,
                    state.revision,
                    last,
                    delay,
                )
            self.applied[model] = (state.revision, delay)
        if state.rollout is not None and state.rollout.status == "running":
            self.observer.mark(model, state.rollout.step_id)
        return assigner

    def refresh(self) -> None:
        """Recompile every model whose record changed (run by the watch timer)."""
        for model in list(self.registry.models):
            raw = self.control.get(model)
            cached = self._assigners.get(model)
            if cached is None or (raw is not None and raw.get("revision") != cached.state.revision):
                self._compile(model)

    async def _watch(self) -> None:
        self.refresh()

    # -- changes -------------------------------------------------------------------

    @property
    def client(self) -> ControlClient:
        """The writer of control records (created on first use)."""
        if self._client is None:
            self._client = ControlClient.for_app(self.app)
        return self._client

    async def change(
        self, model: str, change: Change, *, expect_revision: int | None = None
    ) -> RoutingState:
        """Write ``change`` of ``model`` to the control topic; every worker applies it.

        ``expect_revision``: write only if the topic's latest state is still
        that revision (see :meth:`ControlClient.change`).
        """
        versions = self.model_versions(model)
        return await self.client.change(
            model,
            change,
            versions=versions.names,
            default=versions.default,
            expect_revision=expect_revision,
        )

    # -- figures -------------------------------------------------------------------

    def snapshot(self, model: str) -> dict[str, Any]:
        """This worker's figures for ``model``, as published to the stats table."""
        obs, shadow = self.observer, self.shadow
        agreement = {
            f"{p}->{s}": a.as_dict() for (m, p, s), a in shadow.agreement.items() if m == model
        }
        evaluation = self.evaluations.get(model)
        now = time.time()
        rate: dict[str, float] = {}
        for (m, v), f in obs.total.items():
            if m == model:
                before, then = self._last_counts.get((m, v), (0, now))
                rate[v] = (f.requests - before) / (now - then) if now > then else 0.0
                self._last_counts[(m, v)] = (f.requests, now)
        runners = self.model_versions(model).runners
        in_flight = {v: r.in_flight for v, r in runners.items()}
        return {
            "worker": self.worker_id,
            "at": now,
            "rate": rate,
            "in_flight": in_flight,
            "total": {v: f.as_dict() for (m, v), f in obs.total.items() if m == model},
            "period_id": obs.period_id.get(model),
            "period": {v: f.as_dict() for v, f in obs.period.get(model, {}).items()},
            "shadow": {
                "agreement": agreement,
                "sent": {v: n for (m, v), n in shadow.sent.items() if m == model},
                "dropped": {v: n for (m, v), n in shadow.dropped.items() if m == model},
                "failed": {v: n for (m, v), n in shadow.failed.items() if m == model},
            },
            "evaluation": evaluation.snapshot() if evaluation is not None else None,
        }

    async def _publish(self) -> None:
        from faust_inference.lifecycle.metrics import attach

        attach(self)  # Prometheus may be set up after the lifecycle: checked each time
        for model in list(self.registry.models):
            try:
                await self.client.put(
                    self.client.stats_topic, f"{model}|{self.worker_id}", self.snapshot(model)
                )
            except Exception as exc:  # figures are best effort; routing is not affected
                logger.warning("model %r: could not publish figures: %s", model, exc)

    def figures(self, model: str) -> list[dict[str, Any]]:
        """Every worker's latest published figures for ``model``."""
        prefix = f"{model}|"
        return [
            v for k, v in list(self.stats.items()) if isinstance(k, str) and k.startswith(prefix)
        ]

    # -- rollouts (leader only) ----------------------------------------------------

    async def _judge_rollouts(self) -> None:
        for model in list(self.registry.models):
            state = self.state(model)
            r = state.rollout
            if r is None or r.status != "running":
                continue
            canary, stable, agreement = period_figures(self.figures(model), r.step_id, r)
            decision = rollouts.decide(
                r,
                now=time.time(),
                canary=canary,
                stable=stable,
                agreement=agreement,
                metric=self._metric(model, r.version, r.guards.metric, since=r.step_started_at),
            )
            change = rollouts.next_change(state, decision, now=time.time())
            if change is None:
                continue
            # This worker's table may lag the topic (a change written by the
            # CLI a moment ago, or this judge's own last decision): decide only
            # on the latest revision, never on a rollout that has since changed.
            written = await self.change(model, change, expect_revision=state.revision)
            if not written.history or written.history[-1].at != change.at:
                continue  # dropped (the client logged why)
            log = logger.warning if decision.action == "rollback" else logger.info
            log(
                "model %r: rollout of %s: %s: %s",
                model,
                r.version,
                decision.action,
                decision.reason,
            )
            self.refresh()

    def _metric(self, model: str, version: str, name: str | None, *, since: float) -> float | None:
        """The canary's evaluation figure over every worker, in windows since the step began."""
        if name is None:
            return None
        from faust_inference.lifecycle.evaluation import merged_metric

        return merged_metric(self.figures(model), version, name, since=since)


def period_figures(
    published: list[dict[str, Any]], step_id: str, r: Any
) -> tuple[Figures, Figures, float | None]:
    """The canary's and stable version's figures of one rollout step, over every worker."""
    canary, stable = Figures(), Figures()
    agreement: Agreement | None = None
    for snap in published:
        if snap.get("period_id") != step_id:
            continue
        period = snap.get("period", {})
        if r.version in period:
            canary = canary.merge(Figures.from_dict(period[r.version]))
        if r.stable in period:
            stable = stable.merge(Figures.from_dict(period[r.stable]))
        pair = snap.get("shadow", {}).get("agreement", {}).get(f"{r.stable}->{r.version}")
        if pair:
            a = Agreement.from_dict(pair)
            agreement = a if agreement is None else agreement.merge(a)
    return canary, stable, None if agreement is None else agreement.rate
