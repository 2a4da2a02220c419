"""Settings as validated, immutable value objects.

Registration is where a typo must fail: every setting is checked here, with
an error that names the field and the fix, before a worker consumes a single
event. Objects are frozen so a model's behaviour cannot drift while events
are in flight.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from faust_inference.connections import Connection, usable_name

__all__ = [
    "CacheSettings",
    "CircuitBreakerSettings",
    "HedgeSettings",
    "ModelSettings",
    "Price",
    "RateLimitSettings",
    "ReplicaHealthSettings",
    "RetrySettings",
    "Task",
]

Task = Literal["classification", "regression", "embedding", "text_generation"]

# faust_inference.providers imports this module, so its redaction helpers
# (pure functions) are imported where they are used, never at import time.


class _Frozen(BaseModel):
    # hide_input_in_errors: a ValidationError's text would otherwise quote the
    # input (an api_key, a Connection's AWS keys, a header) next to the problem.
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )


class RetrySettings(_Frozen):
    """How a failed call is retried: exponential backoff with jitter.

    A shorthand int anywhere a ``RetrySettings`` is expected means
    ``RetrySettings(max_retries=n)``.

    Example:
        >>> RetrySettings(max_retries=5, initial_backoff=0.2).max_retries
        5
    """

    max_retries: int = Field(3, ge=0, le=100)
    """Retries after the first attempt; 0 disables retrying."""
    initial_backoff: float = Field(0.1, ge=0)
    """Wait before the first retry, in seconds."""
    max_backoff: float = Field(10.0, ge=0)
    """Upper bound of the computed wait, in seconds."""
    multiplier: float = Field(2.0, ge=1)
    """Growth of the wait per attempt."""
    jitter: float = Field(0.5, ge=0, le=1)
    """Fraction of the wait drawn at random, so that workers do not retry in lockstep."""
    max_retry_after: float = Field(60.0, ge=0)
    """The longest ``Retry-After`` honoured; a server asking for more gets this."""

    @property
    def attempts(self) -> int:
        """Total calls allowed, the first one included."""
        return self.max_retries + 1


class CacheSettings(_Frozen):
    """A model's result cache: which table holds it, how long entries live, how many.

    ``cache=True`` on a model means ``CacheSettings()``. Entries are keyed by
    the model's name, version and :attr:`namespace` and a digest of the model
    input (after preprocessing), so a new version never reads an old one's
    results, and changing :attr:`namespace` invalidates the whole cache.

    Example:
        >>> CacheSettings(ttl=3600, max_entries=50_000).table
        'partitioned'
    """

    ttl: float | None = Field(None, gt=0)
    """Seconds an entry answers for; None keeps entries until evicted."""
    max_entries: int | None = Field(100_000, ge=1)
    """Entries kept per worker; the oldest written are evicted first. None: no bound."""
    table: Literal["partitioned", "global"] = "partitioned"
    """``partitioned``: a Faust Table, co-partitioned with the stream, each worker
    holding its partitions' entries (use when equal inputs arrive with equal
    keys). ``global``: a GlobalTable every worker holds in full (use when equal
    inputs may arrive on any partition)."""
    partitions: int | None = Field(None, ge=1)
    """Partitions of the changelog topic; must equal the source topic's for a
    partitioned table (default: the app's ``topic_partitions``; 1 for global)."""
    namespace: str = ""
    """Part of every key: change it to start from an empty cache."""
    coalesce: bool = True
    """Send identical inputs in flight at the same time once."""


class RateLimitSettings(_Frozen):
    """How fast one worker may call a model: token buckets, adapted on 429.

    Shared by every agent of the worker (the limit belongs to the model
    server, not to a caller). Over the limit, calls wait: consumption slows
    down, nothing fails. When the server answers 429 the request rate is cut
    by :attr:`decrease` (at most once per burst of 429s), every call waits out
    ``Retry-After``, and the rate then grows back by :attr:`increase` per
    second: additive increase, multiplicative decrease, as TCP does. A number
    anywhere a ``RateLimitSettings`` is expected means requests per second.

    Example:
        >>> RateLimitSettings(requests_per_second=50, tokens_per_minute=90_000).per_second
        50.0
    """

    requests_per_second: float | None = Field(None, gt=0)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    """Input plus output tokens, as the provider reports them after each call."""
    burst: float | None = Field(None, ge=1)
    """Requests that may go out at once after a quiet spell; default one second's worth."""
    adaptive: bool = True
    """Cut the rate on 429 and recover it; without a configured rate, the
    first 429 sets one from the rate observed."""
    decrease: float = Field(0.7, gt=0, lt=1)
    """Factor applied to the request rate on a 429."""
    increase: float = Field(0.05, gt=0, le=10)
    """Fraction of the rate before the last cut regained per second without a 429."""
    min_rate: float = Field(0.1, gt=0)
    """The rate is never cut below this many requests per second."""

    @property
    def per_second(self) -> float | None:
        """The configured request rate in requests per second (the stricter of the two)."""
        rates = [
            r
            for r in (
                self.requests_per_second,
                None if self.requests_per_minute is None else self.requests_per_minute / 60,
            )
            if r is not None
        ]
        return min(rates) if rates else None


class CircuitBreakerSettings(_Frozen):
    """When to stop calling a failing endpoint, and what its callers do meanwhile.

    On by default (``circuit_breaker=False`` turns it off): with it, an
    outage slows the stream down instead of dead-lettering healthy events,
    for up to the model's ``outage_budget``.

    After :attr:`failures` consecutive failed calls (no answer, or a 5xx) the
    circuit opens: no call goes out for :attr:`reset_timeout` seconds. Then
    it is half-open: :attr:`probes` calls test the endpoint; a success closes
    it, a failure opens it again. While open, callers either wait
    (``on_open="wait"``: backpressure, the stream pauses) or are answered by
    the model's fallback or default output (``on_open="fallback"``, which
    waits as well when neither is registered). No event is dropped.

    Example:
        >>> CircuitBreakerSettings(failures=5, reset_timeout=10).on_open is None
        True
    """

    failures: int = Field(5, ge=1)
    reset_timeout: float = Field(10.0, gt=0)
    probes: int = Field(1, ge=1)
    on_open: Literal["wait", "fallback"] | None = None
    """``None`` (the default): answer from the model's fallback or default
    output when it has one, wait otherwise."""


class Price(_Frozen):
    """What one model costs, for the estimated-cost metric (any one currency).

    Example:
        >>> Price(input_per_million=0.15, output_per_million=0.6).of(1000, 500)
        0.00045
    """

    input_per_million: float = Field(0.0, ge=0)
    output_per_million: float = Field(0.0, ge=0)
    per_request: float = Field(0.0, ge=0)
    """A fixed price per request (per batch sent), for servers billed per call."""

    def of(self, input_tokens: int, output_tokens: int, requests: int = 0) -> float:
        """The price of that many tokens and requests."""
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1e6 + requests * self.per_request


class ReplicaHealthSettings(_Frozen):
    """When a model's replica (one URL of ``endpoint=[...]``) is taken out, and for how long.

    Passive health: no probe requests, only the answers to real ones. A
    replica is ejected after :attr:`failures` consecutive outages (no answer
    or 5xx), or when its recent mean latency passes :attr:`outlier_factor`
    times the median of the other replicas'. After :attr:`eject_time`
    (doubled at each new ejection, at most :attr:`max_eject_time`) one real
    request probes it; an answer brings it back. At most :attr:`max_ejected`
    of the replicas are out at once, so a model never ejects itself dry.

    Example:
        >>> ReplicaHealthSettings(failures=3, outlier_factor=None).eject_time
        10.0
    """

    failures: int = Field(5, ge=1)
    outlier_factor: float | None = Field(3.0, gt=1)
    """None turns latency-outlier ejection off."""
    outlier_min_gap: float = Field(0.005, ge=0)
    """Seconds a replica must also be slower than the median by, so that jitter
    between 1 ms and 3 ms is not an outlier."""
    eject_time: float = Field(10.0, gt=0)
    max_eject_time: float = Field(300.0, gt=0)
    max_ejected: float = Field(0.5, ge=0, lt=1)
    """Fraction of the replicas that may be ejected at once (always one fewer than all)."""


class HedgeSettings(_Frozen):
    """Hedged requests: a slow call gets a copy on another replica; the first answer wins.

    ``hedge=True`` on a model means ``HedgeSettings()``. When a call has not
    answered after :attr:`delay` (default: the model's recent 95th-percentile
    latency), the same request goes to another replica (the same one if
    there is only one); the first answer is taken, the other call cancelled.
    The :attr:`budget` caps the copies at a fraction of the requests, so a
    slow server is not sent twice its load.

    Example:
        >>> HedgeSettings(delay=0.05, budget=0.02).budget
        0.02
    """

    delay: float | None = Field(None, gt=0)
    """Seconds before the copy is sent; None: the recent p95 of this model's calls."""
    budget: float = Field(0.05, gt=0, le=1)
    """At most this fraction of requests is sent again."""
    min_samples: int = Field(20, ge=1)
    """Latencies seen before the p95 is trusted; no hedging before."""


_ON_OFF_DEFAULTS: dict[str | None, type[BaseModel]] = {
    "circuit_breaker": CircuitBreakerSettings,
    "cache": CacheSettings,
    "hedge": HedgeSettings,
}


class ModelSettings(_Frozen):
    """Everything needed to call one remote model.

    Provider-specific options (``input_name`` for KServe, ``system_prompt``
    for chat, ...) live in :attr:`options` and are validated by the provider.

    Example:
        >>> s = ModelSettings(name="fraud", provider="kserve",
        ...                   endpoint="http://127.0.0.1:8080", retries=2)
        >>> s.retries.attempts
        3
    """

    name: str
    provider: str
    endpoint: str | None = None
    """The model's URL; given a list (replicas), the first, and :attr:`endpoints` holds all."""
    endpoints: tuple[str, ...] = ()
    """Every replica's URL when ``endpoint=[...]`` listed several; balanced by least in flight."""
    replicas: ReplicaHealthSettings = Field(default_factory=ReplicaHealthSettings)
    """When a replica is ejected and probed back (with several endpoints)."""
    hedge: HedgeSettings | None = None
    """Hedged requests (``True`` for the defaults); off by default."""
    remote_name: str | None = None
    """Name of the model on the server; defaults to :attr:`name`."""
    version: str | None = None
    task: Task = "classification"
    max_concurrency: int = Field(16, ge=1, le=10_000)
    """Requests in flight at once, shared by every agent of the worker."""
    batch_size: Annotated[int, Field(ge=1, le=100_000)] | Literal["auto"] = "auto"
    """Most events per request. ``"auto"`` (the default) batches where the protocol
    does (the Open Inference Protocol, embeddings): it starts at 1 and doubles after
    each full batch the server accepts, up to 64 (or the provider's limit), and a
    server that rejects a batch its events pass alone gets the largest batch it
    accepted (1 if none) from then on, logged once; no event fails for it. Other
    providers (chat, text) send one event per request. An int is a fixed maximum;
    1 turns batching off."""
    batch_timeout: float = Field(0.005, ge=0, le=60)
    """Longest wait, in seconds, for a batch to fill before it is sent; only while
    events arrive closer together than this (at a trickle nothing waits). Behind the
    stream (the partition's consumer lag covers the rest of the batch) a batch keeps
    filling while events arrive within this of each other: at most ``batch_size`` x
    ``batch_timeout`` in all. 0 sends whatever is queued at once."""
    timeout: float = Field(10.0, gt=0, le=3600)
    """Per-request timeout in seconds, each attempt separately."""
    max_response_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Largest answer body read, in bytes (default 32 MiB); reading stops past it and
    the call fails with :class:`~faust_inference.ResponseTooLarge` (not retried)."""
    output_type: type[BaseModel] | None = None
    """A pydantic model each answer of a chat model must follow: the provider asks
    for JSON in its schema, and ``r.output`` is the validated object. An answer
    that does not validate is retried (``retries=``), then dead-lettered with the
    validation error (:class:`~faust_inference.InvalidOutput`)."""
    retries: RetrySettings = Field(default_factory=RetrySettings)
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    """Environment variable holding the API key, read at registration."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers. The values of auth-like ones (``Authorization``,
    ``Proxy-Authorization``, ``X-Api-Key``, ``Api-Key``, and any name containing
    ``token``, ``secret``, ``key`` or ``auth``, in any case) are treated as
    secrets: masked in the repr and scrubbed from errors and dead letters."""
    fallback: str | None = None
    """Name of a registered model to ask when this one finally fails."""
    default_output: Any = None
    """Output used when this model (and its fallback) finally fails; only if set."""
    cache: CacheSettings | None = None
    """A result cache in a Faust table (``True`` for the defaults); off by default."""
    rate_limit: RateLimitSettings | None = None
    """Requests and tokens per second/minute for this worker; a number means requests/s."""
    circuit_breaker: CircuitBreakerSettings | None = Field(
        default_factory=lambda: CircuitBreakerSettings()
    )
    """Stop calling a failing endpoint for a while and make callers wait (on by
    default; ``False`` turns it off, a dict or :class:`CircuitBreakerSettings`
    tunes it)."""
    outage_budget: float | None = Field(300.0, ge=0)
    """Seconds an outage of the endpoint (no answer, 5xx, garbage answers) may
    last before waiting events are dead-lettered; until then the stream
    pauses and every event is scored once the server is back. ``None`` waits
    as long as it takes; 0 dead-letters after the retries, as without a
    breaker. Needs the circuit breaker (the default)."""
    connection: Connection | None = None
    """The named connection (endpoint, credentials, region ...) this model uses."""
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return usable_name(value, "model")

    @field_validator("retries", mode="before")
    @classmethod
    def _retries_shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return RetrySettings(max_retries=value)
        return value

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate_limit_shorthand(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return RateLimitSettings(requests_per_second=value)
        return value

    @field_validator("circuit_breaker", "cache", "hedge", mode="before")
    @classmethod
    def _on_off_shorthand(cls, value: Any, info: ValidationInfo) -> Any:
        # True: the settings' defaults; False: off.
        if value is True:
            return _ON_OFF_DEFAULTS[info.field_name]()
        if value is False:
            return None
        return value

    @model_validator(mode="before")
    @classmethod
    def _endpoint_list(cls, data: Any) -> Any:
        # endpoint=[a, b, c]: replicas; settings.endpoint stays one URL (the first).
        if isinstance(data, dict) and isinstance(data.get("endpoint"), list | tuple):
            urls = list(data["endpoint"])
            if not urls:
                raise ValueError("endpoint=[] lists no URL; give one or more")
            data = {**data, "endpoint": urls[0], "endpoints": urls}
        return data

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from faust_inference.providers.redaction import redact_url

        urls = tuple(cls._check_endpoint(v) or "" for v in value)
        twice = sorted({redact_url(u) for u in urls if urls.count(u) > 1})
        if twice:
            # Shown without userinfo or query: a URL's password is a credential.
            raise ValueError(
                f"endpoint lists {', '.join(repr(u) for u in twice)} more than once: "
                "give each replica's URL once"
            )
        return urls

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            from faust_inference.providers.redaction import redact_url

            # Shown without userinfo or query: a URL's password is a credential.
            raise ValueError(
                f"endpoint must start with http:// or https://, got {redact_url(value)!r}: "
                "write it as http://host:port/... or https://host/..."
            )
        if "?" in value or "#" in value:
            # Providers append paths to the endpoint: a query would swallow them
            # (the request goes to the server root), and query keys leak into logs.
            raise ValueError(
                "endpoint takes no query string or fragment ('?...', '#...'): pass a key "
                "with api_key= or api_key_env=, other request headers with headers=, and "
                "provider parameters as options (Azure's api-version: api_version=)"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_fallback(self) -> ModelSettings:
        if self.fallback == self.name:
            raise ValueError("a model cannot be its own fallback")
        return self

    @property
    def has_default_output(self) -> bool:
        """Whether a default output was given (``None`` is a valid default)."""
        return "default_output" in self.model_fields_set

    @property
    def replica_urls(self) -> tuple[str, ...]:
        """Every URL of the model: :attr:`endpoints`, or the one :attr:`endpoint`."""
        return self.endpoints or ((self.endpoint,) if self.endpoint else ())

    @property
    def target(self) -> str:
        """The model's name on the server."""
        return self.remote_name or self.name

    def __repr_args__(self) -> Any:
        # SecretStr already masks the key; drop it altogether so that a repr
        # does not even say whether one is set. Auth-like headers show their
        # names only.
        from faust_inference.providers.redaction import redact_headers

        return [
            (k, redact_headers(v) if k == "headers" else v)
            for k, v in super().__repr_args__()
            if k != "api_key"
        ]
