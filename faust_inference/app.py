"""``install(app)``: gives a Faust app ``app.model(...)`` and the models' lifecycle.

A registered model is a :class:`RemoteModel`: an object to inspect, call
(``await fraud.predict(x)``) and hand to :func:`faust_inference.infer`. Its
provider and runner are built at registration, so every configuration error
surfaces when the app module is imported, not when the first event arrives.
Network resources (the HTTP session, the dispatcher task) start lazily in the
running loop and are closed when the worker shuts down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from faust_inference.config import ModelSettings
from faust_inference.connections import ConnectionStore
from faust_inference.core.breaker import BreakerPool
from faust_inference.core.cache import MemoryStore, ResultCache
from faust_inference.core.hooks import HooksDelegate
from faust_inference.core.runner import InferenceRunner
from faust_inference.exceptions import ConfigurationError, ModelNotFound
from faust_inference.providers.redaction import redact_url
from faust_inference.providers.registry import create_provider
from faust_inference.providers.transport import TransportPool

if TYPE_CHECKING:
    from faust.types import AppT

    from faust_inference.lifecycle.versions import ModelVersions

__all__ = ["ModelRegistry", "RemoteModel", "install"]

F = TypeVar("F", bound=Callable[..., Any])

_SETTINGS_FIELDS = frozenset(ModelSettings.model_fields) - {"options"}


class RemoteModel:
    """A model served elsewhere, registered with ``app.model(...)``.

    Example:
        >>> registry = ModelRegistry()
        >>> fraud = registry.register("fraud", provider="kserve",
        ...                           endpoint="http://127.0.0.1:8080")
        >>> @fraud.preprocess
        ... def features(tx):
        ...     return tx.features
        >>> await fraud.predict([0.1] * 10)  # doctest: +SKIP
        [0.97, 0.03]

    Attributes:
        settings: the validated registration.
        runner: the engine that batches, limits and retries this model's calls.
        cache: the result cache, when registered with ``cache=``.
    """

    def __init__(
        self,
        settings: ModelSettings,
        runner: InferenceRunner,
        cache: ResultCache | None = None,
        registry: ModelRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.cache = cache
        self.registry = registry
        self._preprocess: Callable[[Any], Any] | None = None
        self._versions: ModelVersions | None = None

    @property
    def name(self) -> str:
        """The registered name."""
        return self.settings.name

    @property
    def versions(self) -> ModelVersions:
        """This model's versions: its own registration first (the default), then added ones."""
        if self._versions is None:
            from faust_inference.lifecycle.versions import ModelVersions

            self._versions = ModelVersions(self, self.registry)
        return self._versions

    def add_version(self, version: str, **overrides: Any) -> RemoteModel:
        """Add a version with its own endpoint, remote version or limits; returns this model.

        Settings not given are the model's. Which version answers each event
        is decided at run time by the routing state (``faust inference
        switch``, ``split``, ``rollout``), shared by every worker; see
        ``docs/lifecycle.md``.

        Example:
            >>> fraud.add_version("v2", endpoint="http://b:8080")  # doctest: +SKIP
        """
        self.versions.add(version, **overrides)
        return self

    def version(self, name: str) -> RemoteModel:
        """This model pinned to version ``name``, bypassing the routing state.

        Example:
            >>> await fraud.version("v2").predict([0.1] * 10)  # doctest: +SKIP
        """
        return self.versions.pinned(name)

    def preprocess(self, fun: F) -> F:
        """Register the function that turns an event into this model's input.

        Used by :func:`~faust_inference.infer` for every event; an exception it
        raises sends that event to the dead-letter topic, naming the cause.
        """
        self._preprocess = fun
        return fun

    def __call__(self, fun: Callable[[Any], Any]) -> RemoteModel:
        """``@app.model(name="fraud", ...)`` above a function: it becomes the preprocessor.

        A model is not called to predict (``await model.predict(x)`` does);
        anything but a function here is refused with that hint.

        Raises:
            TypeError: ``fun`` is not callable.
        """
        if not callable(fun):
            raise TypeError(
                f"model {self.name!r} decorates a preprocessor when called; to infer, "
                f"write 'await model.predict(value)' (got {type(fun).__name__})"
            )
        self.preprocess(fun)
        return self

    @property
    def preprocessor(self) -> Callable[[Any], Any] | None:
        """The registered preprocessor, if any."""
        return self._preprocess

    def prepare(self, event: Any) -> Any:
        """The model input for ``event`` (the event itself without a preprocessor)."""
        return event if self._preprocess is None else self._preprocess(event)

    async def predict(self, value: Any) -> Any:
        """Infer one model input, with the model's limits, batching, retries and fallback.

        ``value`` is a model input, not an event: use :meth:`prepare` first
        to apply the preprocessor. With a cache, a known input is answered
        from it (a partitioned table only stores results of stream events:
        outside a stream there is no partition to write to).
        """
        if self.cache is not None:
            return await self.cache.predict(value)
        return await self.runner.predict(value)

    async def predict_many(self, values: Iterable[Any]) -> list[Any]:
        """Infer many model inputs; outputs in input order."""
        if self.cache is not None:
            cache = self.cache
            return list(await asyncio.gather(*(cache.predict(v) for v in values)))
        return await self.runner.predict_many(values)

    async def aclose(self) -> None:
        """Stop this model's calls and release its provider (done at worker shutdown)."""
        await self.runner.aclose()
        if self._versions is not None:
            await self._versions.aclose()

    def __repr__(self) -> str:
        s = self.settings
        # Never the endpoint's userinfo or query: they may hold credentials.
        endpoint = redact_url(s.endpoint) if s.endpoint else None
        return (
            f"<RemoteModel {s.name!r} provider={s.provider!r} endpoint={endpoint!r} "
            f"remote_name={s.target!r} version={s.version!r} task={s.task!r}>"
        )


class ModelRegistry:
    """The models of one app (or of a notebook, without any app).

    Example:
        >>> registry = ModelRegistry()
        >>> m = registry.register("echo", provider="http", endpoint="http://127.0.0.1:9")
        >>> registry["echo"] is m
        True
    """

    def __init__(self, app: AppT | None = None) -> None:
        self.app = app
        """The Faust app whose tables hold result caches (None: caches live in memory)."""
        self.models: dict[str, RemoteModel] = {}
        self.transports = TransportPool()
        self.connections = ConnectionStore()
        """Named endpoints and credentials, for ``app.model(..., connection="name")``."""
        self.hooks = HooksDelegate()
        """Observers of every model's requests and events (metrics sensors add themselves)."""
        self.breakers = BreakerPool()
        """One circuit breaker per endpoint, shared by the models served there."""
        self.ready_checks: dict[str, asyncio.Task[None]] = {}
        """Model name -> its start-up readiness check: one per worker, whatever the agents."""
        self.ready_watched: set[str] = set()
        """Models whose late readiness failure already stops the worker when it comes."""

    @overload
    def register(self, name: str, /, **settings: Any) -> RemoteModel: ...

    @overload
    def register(self, /, *, name: str, **settings: Any) -> RemoteModel: ...

    @overload
    def register(
        self, name: None = None, /, **settings: Any
    ) -> Callable[[Callable[[Any], Any]], RemoteModel]: ...

    def register(
        self, name: str | None = None, /, **settings: Any
    ) -> RemoteModel | Callable[[Callable[[Any], Any]], RemoteModel]:
        """Register a model; with no name, decorate its preprocessor instead.

        Keyword arguments are :class:`~faust_inference.config.ModelSettings`
        fields; any other keyword is a provider option (``input_name=`` ...),
        checked by that provider. The name may also be given as ``name=``,
        as pydantic-minded users write it; it then registers at once, as the
        positional form does.

        Raises:
            ConfigurationError: an invalid setting, an unknown provider or
                option, a missing API key, or a name already registered.
        """
        if name is None and "name" in settings:
            given = settings.pop("name")
            if not isinstance(given, str):
                raise ConfigurationError(
                    f"app.model(name=...) must be a string, got {type(given).__name__}; "
                    "for example app.model('fraud', provider='kserve', ...)"
                )
            name = given
        if name is None:

            def decorator(fun: Callable[[Any], Any]) -> RemoteModel:
                model = self._register(fun.__name__, settings)
                model.preprocess(fun)
                return model

            return decorator
        return self._register(name, settings)

    def _register(self, name: str, kwargs: dict[str, Any]) -> RemoteModel:
        if name in self.models:
            raise ConfigurationError(f"a model named {name!r} is already registered")
        fields = self.connections.resolve(
            {k: v for k, v in kwargs.items() if k in _SETTINGS_FIELDS}
        )
        options = {
            **kwargs.get("options", {}),
            **{k: v for k, v in kwargs.items() if k not in _SETTINGS_FIELDS and k != "options"},
        }
        settings = _validate(name, {**fields, "options": options})
        provider = create_provider(settings, self.transports)
        runner = InferenceRunner(
            provider,
            settings,
            fallback=self.runner,
            hooks=self.hooks,
            breaker=self.breakers.get(settings),
        )
        cache = None
        if settings.cache is not None:
            if self.app is None:
                cache = ResultCache(runner, settings.cache, MemoryStore())
            else:
                from faust_inference.cache import table_cache

                cache = table_cache(self.app, runner, settings.cache)
        model = self.models[name] = RemoteModel(settings, runner, cache, registry=self)
        return model

    def __getitem__(self, name: str) -> RemoteModel:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFound(f"no model named {name!r}; registered: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def runner(self, name: str) -> InferenceRunner:
        """The runner of the model ``name`` (fallbacks are looked up this way)."""
        return self[name].runner

    def check(self) -> None:
        """Verify that every fallback names a registered model.

        Raises:
            ConfigurationError: a fallback is missing, or fallbacks form a loop.
        """
        for model in self.models.values():
            seen = [model.name]
            nxt = model.settings.fallback
            while nxt is not None:
                if nxt not in self.models:
                    raise ConfigurationError(
                        f"model {model.name!r} falls back to {nxt!r}, which is not registered"
                    )
                if nxt in seen:
                    raise ConfigurationError(f"fallbacks form a loop: {' -> '.join([*seen, nxt])}")
                seen.append(nxt)
                nxt = self.models[nxt].settings.fallback

    async def aclose(self) -> None:
        """Close every model and the shared connections."""
        for model in self.models.values():
            await model.aclose()
        await self.transports.aclose()


def install(
    app: AppT, *, metrics: bool = False, collapse_log_repeats: bool = True
) -> ModelRegistry:
    """Add ``app.model(...)`` and the model registry (``app.inference``) to a Faust app.

    Calling it twice returns the same registry. Models are closed, and
    their connections released, when the worker shuts down. ``metrics=True``
    serves Prometheus metrics at ``/metrics`` (see
    :func:`faust_inference.sensors.prometheus.setup` for prices and options).
    ``collapse_log_repeats`` (on by default) turns the Kafka client's repeated
    connection errors into one line per kind and 10 s, with a count
    (:mod:`faust_inference.logfilter`); ``False`` leaves logging as it is.
    Once the worker has started, the DEBUG level Faust's start-up spinner left
    on the root logger is set back to the ``-l`` level
    (:func:`~faust_inference.logfilter.end_spinner_debug`): a busy worker
    otherwise spends 7-9% of its time building records nothing writes.

    Example:
        >>> import faust
        >>> app = faust.App("fraud", broker="kafka://127.0.0.1:9092")  # connects nothing yet
        >>> registry = install(app)
        >>> fraud = app.model("fraud", provider="kserve", endpoint="http://127.0.0.1:8080")
    """
    if collapse_log_repeats:
        from faust_inference.logfilter import collapse_repeats

        collapse_repeats()
    registry = _registry_of(app)
    if metrics:
        # One way only: the sensor is handed the registry and never calls back here.
        from faust_inference.sensors.prometheus import attach

        attach(app, registry)
    return registry


def _registry_of(app: AppT) -> ModelRegistry:
    """The app's registry, made and wired into the app on first use."""
    existing = getattr(app, "inference", None)
    if isinstance(existing, ModelRegistry):
        return existing
    registry = ModelRegistry(app)

    async def close_models(sender: object, *args: object, **kwargs: object) -> None:
        await registry.aclose()

    # cast: mode's SignalHandlerT (mypy_extensions' NamedArg) matches no async
    # function under mypy, whatever its signature.
    app.on_before_shutdown.connect(cast(Any, close_models))
    # Attributes Faust's AppT does not declare; _faust_inference_close keeps a
    # reference, as the signal may hold its receivers weakly.
    vars(app).update(
        inference=registry, model=registry.register, _faust_inference_close=close_models
    )
    from faust_inference.logfilter import end_spinner_debug_after_start

    async def quiet_root_logger() -> None:
        # Faust's start-up spinner leaves the root logger at DEBUG (see logfilter).
        await end_spinner_debug_after_start()

    app.task(quiet_root_logger)
    from faust_inference.cli import register_command

    register_command(app, registry)
    return registry


def _validate(name: str, fields: dict[str, Any]) -> ModelSettings:
    from pydantic import ValidationError

    try:
        return ModelSettings(name=name, **fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"model {name!r}: {problems}") from None
