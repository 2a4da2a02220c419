"""Model lifecycle without restarts: versions, live switch, sticky split, shadow, rollouts.

Everything a worker needs to route each event to a version, shared through a
compacted control topic so that every worker of the app agrees within a
second, and survives restarts and replays. See ``docs/lifecycle.md``.

Example::

    from faust_inference import install
    from faust_inference.lifecycle import lifecycle

    install(app)
    fraud = app.model("fraud", provider="kserve", endpoint="http://a:8080", version="v1")
    lifecycle(app).add_version(fraud, "v2", endpoint="http://b:8080")
"""

from faust_inference.lifecycle.control import ControlClient
from faust_inference.lifecycle.evaluation import LiveEvaluation, Window
from faust_inference.lifecycle.labels import evaluate_live
from faust_inference.lifecycle.plane import Lifecycle, lifecycle
from faust_inference.lifecycle.routing import (
    Change,
    GuardSettings,
    RolloutState,
    RoutingState,
    Variant,
    key_bytes,
)
from faust_inference.lifecycle.shadow import Agreement, ShadowTraffic
from faust_inference.lifecycle.stats import Figures
from faust_inference.lifecycle.versions import ModelVersions

__all__ = [
    "Agreement",
    "Change",
    "ControlClient",
    "Figures",
    "GuardSettings",
    "Lifecycle",
    "LiveEvaluation",
    "ModelVersions",
    "RolloutState",
    "RoutingState",
    "ShadowTraffic",
    "Variant",
    "Window",
    "evaluate_live",
    "key_bytes",
    "lifecycle",
]
