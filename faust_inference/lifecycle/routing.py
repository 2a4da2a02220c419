"""Which version answers an event: the routing state of one model, and sticky assignment.

Pure data and arithmetic, no Faust and no network, so that every worker, the
command line and the web API compute exactly the same thing from the same
record. A :class:`RoutingState` says, for one model, which version is the
default, how traffic is split, which version shadows it and what rollout is
under way; :meth:`RoutingState.apply` turns it into the next state given a
:class:`Change`, which is also the audit record of that change.

Assignment is by a stable hash (BLAKE2b) of the event key salted with the
model name: the same key lands on the same arm on every worker, after a
restart and on a replay, and two models split the same keys independently.
Arms are laid out on ``[0, 1)`` default version first, the others after it
in name order, so a canary growing from 1% to 10% keeps every key it already
had (its band only widens)::

    state = RoutingState.initial("fraud", "v1", versions=("v1", "v2"))
    state = state.apply(Change.split({"v1": 90, "v2": 10}, reason="A/B test"))
    state.assign(b"customer-42")          # -> ("v1", "control") on every worker

Events without a key are assigned by their position (topic, partition and
offset), which is stable across workers and replays but not per entity; an
event with neither key nor position (``predict()`` outside a stream) goes to
the default version.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from faust_inference.exceptions import ConfigurationError

__all__ = [
    "Change",
    "GuardSettings",
    "RolloutState",
    "RoutingState",
    "Variant",
    "bucket",
    "key_bytes",
]

Variant = Literal["default", "control", "treatment", "stable", "canary", "pinned"]
"""Which arm an event took: ``default`` (no split), ``control`` / ``treatment``
(the default version's arm / another arm of a split), ``stable`` / ``canary``
(during a rollout), ``pinned`` (a version chosen in code with ``.version()``)."""

HISTORY = 50
"""Changes kept in each model's state, newest last: the audit trail on the topic."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def key_bytes(key: Any) -> bytes | None:
    """The bytes an event key is hashed as: ``"k"`` and ``b"k"`` hash alike.

    Example:
        >>> key_bytes("k") == key_bytes(b"k")
        True
    """
    if key is None:
        return None
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    as_dict = getattr(key, "asdict", None)
    try:
        return orjson.dumps(as_dict() if callable(as_dict) else key, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return repr(key).encode()


def bucket(salt: str, key: bytes) -> float:
    """Where ``key`` falls on ``[0, 1)`` for ``salt``: the same on every machine.

    Example:
        >>> bucket("fraud", b"k") == bucket("fraud", b"k")
        True
    """
    digest = hashlib.blake2b(key, digest_size=8, person=b"fi-route", salt=_salt(salt)).digest()
    return int.from_bytes(digest, "big") / 2**64


def _salt(name: str) -> bytes:
    # blake2b's salt holds 16 bytes; longer model names are hashed into it.
    raw = name.encode()
    return raw if len(raw) <= 16 else hashlib.blake2b(raw, digest_size=16).digest()


class GuardSettings(_Frozen):
    """What a rollout step must show before traffic moves on; breaking one rolls back.

    Figures are taken over the canary's requests since its current step began,
    summed over every worker. A guard with ``None`` is not checked.

    Example:
        >>> GuardSettings(max_error_rate=0.05, max_p99_ratio=1.5).min_requests
        50
    """

    max_error_rate: float | None = Field(0.05, ge=0, le=1)
    """Failed requests over all requests of the canary (each attempt counts)."""
    max_p99_s: float | None = Field(None, gt=0)
    """The canary's p99 request latency, in seconds."""
    max_p99_ratio: float | None = Field(None, gt=0)
    """The canary's p99 over the stable version's p99 in the same period."""
    min_agreement: float | None = Field(None, ge=0, le=1)
    """Agreement of the canary with the stable version (needs a shadow comparison
    of the same events, see :mod:`faust_inference.lifecycle.shadow`)."""
    metric: str | None = None
    """An evaluation metric (``accuracy``, ``f1``, ``mae`` ...) of the canary,
    from live evaluation against labels."""
    min_metric: float | None = None
    """Lowest acceptable value of :attr:`metric` (for scores: accuracy, f1 ...)."""
    max_metric: float | None = None
    """Highest acceptable value of :attr:`metric` (for errors: mae, rmse, log_loss)."""
    min_requests: int = Field(50, ge=1)
    """Requests the canary must have served in a step before it may advance."""


class RolloutState(_Frozen):
    """A guarded rollout of :attr:`version`, as it stands.

    Example:
        >>> RolloutState(version="v2", stable="v1", steps=(1, 10, 100)).percent
        1.0
    """

    version: str
    """The version being rolled out (the canary)."""
    stable: str
    """The version it replaces, which keeps the rest of the traffic."""
    steps: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0)
    """Percentages of traffic the canary gets, in order."""
    step: int = 0
    """Index in :attr:`steps` of the current step."""
    dwell_s: float = Field(60.0, ge=0)
    """Seconds each step lasts, at least, before the next."""
    step_started_at: float = Field(default_factory=time.time)
    guards: GuardSettings = Field(default_factory=GuardSettings)
    status: Literal["running", "promoted", "rolled_back"] = "running"
    last_decision: str | None = None
    """The controller's last verdict, in words (which guard, which figure)."""

    @property
    def percent(self) -> float:
        """The canary's share of traffic now, in percent."""
        return self.steps[self.step] if self.status == "running" else 0.0

    @property
    def step_id(self) -> str:
        """Names this step, so that workers count each step's requests apart."""
        return f"{self.version}@{self.step}@{self.step_started_at:.3f}"


class Change(_Frozen):
    """One change of a model's routing: what, when, why and from where.

    A change is both the command (it is applied by :meth:`RoutingState.apply`)
    and the audit record (the last :data:`HISTORY` are kept in the state).

    Example:
        >>> Change.switch("v2", reason="v2 passed review").action
        'switch'
    """

    action: Literal[
        "create",
        "switch",
        "split",
        "shadow",
        "shadow_off",
        "rollout",
        "advance",
        "promote",
        "rollback",
    ]
    at: float = Field(default_factory=time.time)
    """Unix time the change was made."""
    version: str | None = None
    weights: dict[str, float] | None = None
    rate: float | None = None
    rollout: RolloutState | None = None
    reason: str | None = None
    source: str = "code"
    """Who made it: ``cli``, ``web``, ``code``, ``rollout`` (the guard controller)."""

    @classmethod
    def switch(cls, version: str, **kw: Any) -> Change:
        """Send all traffic to ``version`` (ends any split and rollout)."""
        return cls(action="switch", version=version, **kw)

    @classmethod
    def split(cls, weights: Mapping[str, float], **kw: Any) -> Change:
        """Split traffic by ``weights`` (any positive numbers; normalised)."""
        return cls(action="split", weights=dict(weights), **kw)

    @classmethod
    def shadow(cls, version: str, rate: float = 1.0, **kw: Any) -> Change:
        """Copy a ``rate`` sample of the traffic to ``version``, answers compared."""
        return cls(action="shadow", version=version, rate=rate, **kw)

    @classmethod
    def shadow_off(cls, **kw: Any) -> Change:
        """Stop shadow traffic."""
        return cls(action="shadow_off", **kw)

    def describe(self) -> str:
        """The change in a few words, for logs, the CLI and the web page."""
        if self.action in ("switch", "promote"):
            what = f"{self.action} to {self.version}"
        elif self.action == "split":
            what = "split " + " ".join(f"{v}={w:g}" for v, w in (self.weights or {}).items())
        elif self.action == "shadow":
            what = f"shadow {self.version} at rate {self.rate:g}"
        elif self.action in ("rollout", "advance") and self.rollout is not None:
            what = f"{self.action} {self.rollout.version} to {self.rollout.percent:g}%"
        elif self.action == "create":
            what = f"create with default {self.version}"
        else:
            what = self.action.replace("_", " ")
        return what + (f" ({self.reason})" if self.reason else "")


class RoutingState(_Frozen):
    """The routing of one model, shared by every worker through the control topic.

    Example:
        >>> s = RoutingState.initial("fraud", "v1", versions=("v1", "v2"))
        >>> s.apply(Change.switch("v2")).default
        'v2'
    """

    model: str
    default: str
    versions: tuple[str, ...]
    """The versions registered when the state was last written (for checks)."""
    weights: dict[str, float] = Field(default_factory=dict)
    """A split, in percent summing to 100; empty: everything to :attr:`default`."""
    shadow: str | None = None
    shadow_rate: float = Field(0.0, ge=0, le=1)
    rollout: RolloutState | None = None
    revision: int = 0
    """Incremented by every change: what workers compare to notice one."""
    changed_at: float = 0.0
    history: tuple[Change, ...] = ()

    @classmethod
    def initial(cls, model: str, default: str, *, versions: tuple[str, ...]) -> RoutingState:
        """The state of a model nobody has changed yet: all traffic to ``default``."""
        return cls(model=model, default=default, versions=versions)

    # -- changes -------------------------------------------------------------------

    def apply(self, change: Change) -> RoutingState:
        """The state after ``change``, which is checked against the versions.

        Raises:
            ConfigurationError: the change names an unknown version, weights
                do not add up to anything, a rate is outside [0, 1] ...
        """
        fields: dict[str, Any] = {}
        a = change.action
        if a in ("switch", "promote", "create"):
            fields = {"default": self._known(change.version), "weights": {}, "rollout": None}
            if a == "promote":
                fields["rollout"] = change.rollout
        elif a == "split":
            fields = {"weights": self._normalise(change.weights or {}), "rollout": None}
        elif a == "shadow":
            rate = 1.0 if change.rate is None else change.rate
            if not 0 < rate <= 1:
                raise ConfigurationError(f"shadow rate must be in (0, 1], got {rate:g}")
            version = self._known(change.version)
            if version == self.default:
                raise ConfigurationError(
                    f"model {self.model!r}: {version!r} is the default version; "
                    "shadow another version"
                )
            fields = {"shadow": version, "shadow_rate": rate}
        elif a == "shadow_off":
            fields = {"shadow": None, "shadow_rate": 0.0}
        elif a in ("rollout", "advance"):
            r = change.rollout
            if r is None:
                raise ConfigurationError(f"a {a!r} change needs its rollout state")
            self._known(r.version)
            if r.version == self.default and a == "rollout":
                raise ConfigurationError(
                    f"model {self.model!r}: {r.version!r} is already the default version"
                )
            fields = {"weights": {}, "rollout": r}
        elif a == "rollback":
            fields = {"weights": {}, "rollout": change.rollout}
        history = (*self.history, change)[-HISTORY:]
        return self.model_copy(
            update={
                **fields,
                "revision": self.revision + 1,
                "changed_at": change.at,
                "history": history,
            }
        )

    def with_versions(self, versions: tuple[str, ...]) -> RoutingState:
        """The same routing, knowing the versions registered now."""
        return self.model_copy(update={"versions": versions})

    def _known(self, version: str | None) -> str:
        if version is None or version not in self.versions:
            raise ConfigurationError(
                f"model {self.model!r} has no version {version!r}; "
                f"registered: {', '.join(self.versions)} (add one with .add_version())"
            )
        return version

    def _normalise(self, weights: Mapping[str, float]) -> dict[str, float]:
        for version, weight in weights.items():
            self._known(version)
            if weight < 0:
                raise ConfigurationError(f"split weight of {version!r} must be >= 0, got {weight}")
        total = sum(weights.values())
        if total <= 0:
            raise ConfigurationError("split weights must add up to more than 0, e.g. v1=90 v2=10")
        return {v: 100 * w / total for v, w in weights.items() if w > 0}

    # -- assignment ----------------------------------------------------------------

    def arms(self) -> list[tuple[str, float]]:
        """Each version with its share of traffic in percent, in band order."""
        if self.rollout is not None and self.rollout.status == "running":
            p = self.rollout.percent
            arms = {self.rollout.stable: 100 - p, self.rollout.version: p}
        elif self.weights:
            arms = dict(self.weights)
        else:
            return [(self.default, 100.0)]
        first = [(self.default, arms.pop(self.default))] if self.default in arms else []
        return first + sorted(arms.items())

    def assign(self, key: bytes | None) -> tuple[str, Variant]:
        """The version and arm for an event with this key (hashed: see :func:`key_bytes`)."""
        return Assigner(self).assign(key)

    def wants_shadow(self, key: bytes | None) -> bool:
        """Whether an event with this key is copied to the shadow version."""
        if self.shadow is None or self.shadow_rate <= 0:
            return False
        if self.shadow_rate >= 1:
            return True
        if key is None:
            return False
        return bucket(self.model + "/shadow", key) < self.shadow_rate


class Assigner:
    """A routing state compiled for assignment: the hot path of every event.

    Example:
        >>> a = Assigner(RoutingState.initial("m", "v1", versions=("v1",)))
        >>> a.assign(b"k")
        ('v1', 'default')
    """

    __slots__ = ("bounds", "rollout", "salt", "single", "state")

    def __init__(self, state: RoutingState) -> None:
        self.state = state
        self.salt = state.model
        self.rollout = state.rollout is not None and state.rollout.status == "running"
        arms = [(v, w) for v, w in state.arms() if w > 0]
        self.single: str | None = arms[0][0] if len(arms) == 1 else None
        bounds: list[tuple[float, str]] = []
        edge = 0.0
        for version, weight in arms:
            edge += weight / 100
            bounds.append((edge, version))
        self.bounds = bounds

    def assign(self, key: bytes | None) -> tuple[str, Variant]:
        """The version and arm for ``key``; no key: the default version."""
        default = self.state.default
        if self.single is not None:
            version = self.single
        elif key is None:
            version = default
        else:
            point = bucket(self.salt, key)
            version = self.bounds[-1][1]
            for edge, v in self.bounds:
                if point < edge:
                    version = v
                    break
        if self.rollout:
            assert self.state.rollout is not None
            return version, "canary" if version == self.state.rollout.version else "stable"
        if self.single is not None and not self.state.weights:
            return version, "default"
        return version, "control" if version == default else "treatment"
