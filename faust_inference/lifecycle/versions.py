"""Several versions of one model, each with its own runner and, where given, its own limits.

A version inherits every setting of the model it is added to and overrides
only what it is given: another ``endpoint``, another remote ``version``,
other limits (``max_concurrency``, ``timeout``, ``rate_limit`` ...). Each
version has its own :class:`~faust_inference.core.runner.InferenceRunner`, so
its in-flight cap, retries and circuit breaker are its own, and a slow
version cannot take another's slots.

Example::

    fraud = app.model("fraud", provider="kserve", endpoint="http://a:8080", version="v1")
    versions = ModelVersions(fraud, app.inference)
    versions.add("v2", endpoint="http://b:8080", max_concurrency=4)
    versions.names                    # ('v1', 'v2'); 'v1', the first, is the default
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from faust_inference.app import RemoteModel
from faust_inference.config import ModelSettings
from faust_inference.connections import usable_name
from faust_inference.core.runner import InferenceRunner
from faust_inference.exceptions import ConfigurationError

__all__ = ["SHADOW_BATCH_WAIT", "ModelVersions", "PinnedVersion", "label", "version_settings"]

SHADOW_BATCH_WAIT = 0.2
"""Seconds a shadow copy waits for others to share its request."""

_NOT_PER_VERSION = frozenset({"name", "fallback", "cache", "connection"})


def label(settings: ModelSettings) -> str:
    """The version name of a registration: its ``version``, or ``"default"`` without one."""
    return settings.version or "default"


def version_settings(base: ModelSettings, version: str, overrides: dict[str, Any]) -> ModelSettings:
    """The settings of ``version``: ``base`` with ``overrides`` applied, validated.

    Provider options (any keyword that is not a setting) are merged into the
    model's options. A version's remote ``version`` defaults to its name. An
    ``endpoint`` override (one URL or a list of replicas) replaces all of the
    base's URLs, its replicas too. The base's connection is kept as it is, with
    its SDK ``credentials`` object.

    Example:
        >>> base = ModelSettings(name="fraud", provider="kserve",
        ...                      endpoint=["http://a1:8080", "http://a2:8080"])
        >>> version_settings(base, "v2", {"endpoint": "http://b:8080"}).replica_urls
        ('http://b:8080',)

    Raises:
        ConfigurationError: an invalid setting, naming the version and the field.
    """
    try:
        usable_name(version, "version")
    except ValueError as exc:
        raise ConfigurationError(f"model {base.name!r}: {exc}") from None
    fields = set(ModelSettings.model_fields)
    bad = sorted(set(overrides) & _NOT_PER_VERSION)
    if bad:
        raise ConfigurationError(
            f"model {base.name!r}, version {version!r}: {', '.join(bad)} cannot differ "
            "per version; set it on the model"
        )
    settings = {k: v for k, v in overrides.items() if k in fields and k != "options"}
    options = {
        **base.options,
        **overrides.get("options", {}),
        **{k: v for k, v in overrides.items() if k not in fields},
    }
    # The base's own objects, not a model_dump() round trip: a dump drops the
    # fields marked exclude=True (a connection's SDK ``credentials``).
    data = {k: getattr(base, k) for k in base.model_fields_set}
    if "endpoint" in settings and "endpoints" not in settings:
        # A version with an endpoint of its own (one URL or a list) does not
        # keep the base's replicas, which replica_urls would prefer.
        data.pop("endpoints", None)
    data.update({"version": version, **settings, "options": options})
    if base.api_key is not None and "api_key" not in overrides:
        data["api_key"] = base.api_key
    try:
        return ModelSettings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"model {base.name!r}, version {version!r}: {problems}") from None


class ModelVersions:
    """The versions of one registered model, in the order they were added.

    Args:
        model: the registered model (a :class:`~faust_inference.RemoteModel`);
            its own registration is the first version, and the default.
        registry: the model registry, whose connections, hooks and breakers
            the versions share.
    """

    def __init__(self, model: Any, registry: Any) -> None:
        if registry is None:
            raise ConfigurationError(
                f"model {model.name!r} was not registered with app.model() or "
                "ModelRegistry.register(): it cannot have versions"
            )
        self.model = model
        self.registry = registry
        base = label(model.settings)
        self.default = base
        """The version answering when the control topic has no record of this model."""
        self.runners: dict[str, InferenceRunner] = {base: model.runner}
        self._shadow: dict[str, InferenceRunner] = {}

    @property
    def names(self) -> tuple[str, ...]:
        """Every version, the default first."""
        return tuple(self.runners)

    def add(self, version: str, **overrides: Any) -> InferenceRunner:
        """Add ``version``; settings not given are the model's.

        Raises:
            ConfigurationError: the version exists, or a setting is invalid.
        """
        if version in self.runners:
            raise ConfigurationError(f"model {self.model.name!r} already has a version {version!r}")
        settings = version_settings(self.model.settings, version, overrides)
        runner = self.runners[version] = self._runner_for(settings)
        registry = self.registry
        if registry.app is not None:
            # Routing needs the control table, declared before the worker starts.
            from faust_inference.lifecycle.plane import lifecycle

            lifecycle(registry.app)
        return runner

    def _runner_for(self, settings: ModelSettings) -> InferenceRunner:
        from faust_inference.providers.registry import create_provider

        registry = self.registry
        return InferenceRunner(
            create_provider(settings, registry.transports),
            settings,
            fallback=registry.runner,
            hooks=registry.hooks,
            breaker=registry.breakers.get(settings),
        )

    def shadow_runner(self, version: str) -> InferenceRunner:
        """The runner that sends ``version``'s shadow copies (made on first use).

        Its own, so that copies never take the slots of the version's routed
        traffic; no retries and no fallback (a failed copy is only counted);
        and copies wait up to :data:`SHADOW_BATCH_WAIT` seconds for company,
        so that they go out in few requests: each request costs the worker's
        event loop, which the primary's events are waiting for.
        """
        runner = self._shadow.get(version)
        if runner is None:
            base = self.runner(version).settings
            settings = base.model_copy(
                update={
                    "retries": base.retries.model_copy(update={"max_retries": 0}),
                    "batch_timeout": max(base.batch_timeout, SHADOW_BATCH_WAIT),
                    "fallback": None,
                }
            )
            runner = self._shadow[version] = self._runner_for(settings)
        return runner

    def pinned(self, version: str) -> PinnedVersion:
        """The model pinned to ``version`` (see :meth:`RemoteModel.version`)."""
        runner = self.runner(version)
        return PinnedVersion(self.model, version, runner)

    def runner(self, version: str) -> InferenceRunner:
        """The runner of ``version``.

        Raises:
            ConfigurationError: no such version (the message lists them).
        """
        try:
            return self.runners[version]
        except KeyError:
            raise ConfigurationError(
                f"model {self.model.name!r} has no version {version!r}; "
                f"registered: {', '.join(self.runners)} (add one with .add_version())"
            ) from None

    async def aclose(self) -> None:
        """Close the runners of the added versions (the model closes its own)."""
        for runner in [*self.runners.values(), *self._shadow.values()]:
            if runner is not self.model.runner:
                await runner.aclose()


class PinnedVersion(RemoteModel):
    """A model pinned to one of its versions: routing does not apply to it.

    Shares the model's preprocessor; its results say ``variant="pinned"``.
    A pinned version reads no result cache (the cache belongs to the model's
    own registration).

    Example:
        >>> v2 = fraud.version("v2")                       # doctest: +SKIP
        >>> await v2.predict([0.1] * 10)                   # doctest: +SKIP
    """

    def __init__(self, base: RemoteModel, version: str, runner: InferenceRunner) -> None:
        super().__init__(runner.settings, runner, None, registry=base.registry)
        self.base = base
        self.pinned_version = version

    @property
    def preprocessor(self) -> Any:
        """The model's preprocessor (or one registered on this view)."""
        return self._preprocess or self.base.preprocessor

    def prepare(self, event: Any) -> Any:
        """The model input for ``event``, by the model's preprocessor."""
        fun = self.preprocessor
        return event if fun is None else fun(event)

    async def aclose(self) -> None:
        """Nothing to close: the runner belongs to the model."""

    def __repr__(self) -> str:
        return f"<PinnedVersion {self.name!r} version={self.pinned_version!r}>"
