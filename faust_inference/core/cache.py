"""A result cache in front of a model's runner.

A hit answers an input without calling the model; identical inputs in flight
at the same time (in one batch or in several) share one call. Where entries
live is a :class:`CacheStore`: a plain dict here, a changelog-backed Faust
table in :mod:`faust_inference.cache`. The cache is what makes replays
idempotent: an event's result is stored when its call completes, before the
event is acknowledged, so an event delivered again after a crash is answered
from the store instead of the model.

Keys are ``model|version|namespace|digest``, the digest being a 128-bit
BLAKE2b of the input encoded with orjson (sorted keys), so equal inputs get
equal keys in every worker and every run, and a new version never reads an
old one's entries.

Example:
    >>> cache = ResultCache(runner, CacheSettings(ttl=3600), MemoryStore())  # doctest: +SKIP
    >>> await cache.predict([0.1, 0.2])   # a call                           # doctest: +SKIP
    >>> await cache.predict([0.1, 0.2])   # a hit                            # doctest: +SKIP
    >>> cache.hits, cache.misses                                             # doctest: +SKIP
    (1, 1)
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ValidationError

from faust_inference.config import CacheSettings
from faust_inference.core.runner import InferenceRunner, Outcome
from faust_inference.exceptions import InvalidInput

__all__ = ["CacheStore", "MemoryStore", "ResultCache", "cache_digest"]

_STALE = object()
"""A stored output that no longer fits the model's ``output_type``."""

_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def cache_digest(value: Any) -> str:
    """The hex digest identifying a model input.

    Raises:
        InvalidInput: the input cannot be encoded as JSON (sets, arbitrary
            objects): there is no stable identity to cache it by.
    """
    try:
        encoded = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError as exc:
        raise InvalidInput(
            "input",
            f"cannot be cached: {exc}. Make the preprocessor return JSON-compatible data "
            "(dict, list, str, numbers, bool, None) or register the model without cache=",
        ) from None
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


class CacheStore(Protocol):
    """Where cache entries live.

    An entry is a JSON-compatible dict (``output``, ``version``, ``at``:
    Unix time written, ``p``: the partition it was written for).
    ``partition`` says which changelog partition a write belongs to; stores
    that cannot place a write without one skip it.
    """

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry for ``key``, if stored."""
        ...

    def put(self, key: str, entry: dict[str, Any], partition: int | None) -> bool:
        """Store ``entry``; whether it was stored."""
        ...

    def delete(self, key: str, partition: int | None) -> None:
        """Remove ``key`` (no error if absent)."""
        ...

    def items(self) -> Iterable[tuple[str, dict[str, Any]]]:
        """Every entry this worker holds, for rebuilding the eviction order."""
        ...


class MemoryStore:
    """Entries in a dict of this process: for models used without a Faust app."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry for ``key``, if stored."""
        return self.data.get(key)

    def put(self, key: str, entry: dict[str, Any], partition: int | None) -> bool:
        """Store ``entry``."""
        self.data[key] = entry
        return True

    def delete(self, key: str, partition: int | None) -> None:
        """Remove ``key``."""
        self.data.pop(key, None)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every entry."""
        return iter(list(self.data.items()))


class ResultCache:
    """Answers inputs from a store when it can, and calls the runner once per distinct input.

    Only the model's own answers are stored: fallback and default outputs
    are degraded answers, and caching them would outlive the outage.

    Args:
        runner: the model's runner, called on a miss.
        settings: TTL, bound, namespace, coalescing.
        store: where entries live.
        now: wall-clock time source (entries carry their write time, which
            must mean the same in every worker).
    """

    def __init__(
        self,
        runner: InferenceRunner,
        settings: CacheSettings,
        store: CacheStore,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.store = store
        self._now = now
        model = runner.settings
        self._prefix = f"{model.name}|{model.version or ''}|{settings.namespace}|"
        self._output_type = model.output_type
        """Structured outputs are stored as JSON and validated back on a hit."""
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._order: OrderedDict[str, int | None] = OrderedDict()
        """Stored keys, oldest write first, with their partition: the eviction order."""
        self.hits = 0
        """Inputs answered from the store."""
        self.misses = 0
        """Inputs that needed a call (coalesced ones included)."""
        self.coalesced = 0
        """Misses that shared another input's call instead of making their own."""

    def key(self, value: Any) -> str:
        """The cache key of a model input.

        Raises:
            InvalidInput: the input has no stable encoding.
        """
        return self._prefix + cache_digest(value)

    def submit(
        self,
        value: Any,
        partition: int | None = None,
        *,
        patient: bool = True,
        backlog: int = 0,
    ) -> asyncio.Future[Outcome]:
        """Like :meth:`InferenceRunner.submit`, answered from the store when possible.

        ``partition`` is the source partition of the event: where a
        partitioned table records the result. An input that cannot be
        cached fails its future with :class:`InvalidInput`.
        """
        try:
            key = self.key(value)
        except InvalidInput as exc:
            failed: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        hooks = self.runner.hooks
        entry = self.store.get(key)
        if entry is not None:
            ttl = self.settings.ttl
            output = self._restored(entry["output"])
            if (ttl is None or self._now() - entry["at"] < ttl) and output is not _STALE:
                self.hits += 1
                hooks.on_cache(self.runner.settings, True)
                done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
                done.set_result(
                    Outcome(
                        output,
                        self.runner.name,
                        entry.get("version"),
                        0.0,
                        0,
                        cached=True,
                    )
                )
                return done
            self._forget(key, entry.get("p"))
        self.misses += 1
        hooks.on_cache(self.runner.settings, False)
        if self.settings.coalesce:
            shared = self._inflight.get(key)
            if shared is not None:
                self.coalesced += 1
                return shared
        future = self.runner.submit(value, patient=patient, backlog=backlog)
        if self.settings.coalesce:
            self._inflight[key] = future
        future.add_done_callback(functools.partial(self._completed, key, partition))
        return future

    async def predict(self, value: Any, partition: int | None = None) -> Any:
        """Infer one input through the cache and return its output."""
        # Shielded: a caller giving up must not cancel a call others share.
        return (await asyncio.shield(self.submit(value, partition, patient=False))).output

    def clear(self) -> int:
        """Remove every entry of this model this worker holds; the number removed.

        Other workers keep their partitions' entries: to invalidate a model
        everywhere, register a new ``version`` or change the cache's
        ``namespace``, which no old entry matches.
        """
        removed = 0
        for key, entry in list(self.store.items()):
            if key.startswith(self._prefix):
                self.store.delete(key, entry.get("p"))
                removed += 1
        self._order.clear()
        return removed

    def rebuild(self) -> None:
        """Relearn the eviction order from the store (after a table's recovery).

        Entries that expired meanwhile are removed; beyond the bound, the
        oldest are evicted.
        """
        ttl, now = self.settings.ttl, self._now()
        stored = []
        for key, entry in self.store.items():
            if not key.startswith(self._prefix) or not isinstance(entry, dict):
                continue
            at = entry.get("at", 0.0)
            if ttl is not None and now - at >= ttl:
                self.store.delete(key, entry.get("p"))  # expired while we were away
            else:
                stored.append((at, key, entry.get("p")))
        stored.sort(key=lambda item: item[0])
        self._order = OrderedDict((key, p) for _, key, p in stored)
        self._trim()

    def _completed(self, key: str, partition: int | None, future: asyncio.Future[Outcome]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if future.cancelled() or future.exception() is not None:
            return
        outcome = future.result()
        if outcome.fallback:
            return
        output = outcome.output
        if isinstance(output, BaseModel):
            # A table's changelog holds JSON; the hit validates it back.
            output = output.model_dump(mode="json")
        entry = {"output": output, "version": outcome.version, "at": self._now()}
        if partition is not None:
            entry["p"] = partition
        if self.store.put(key, entry, partition):
            order = self._order
            order[key] = partition
            order.move_to_end(key)
            self._trim()

    def _restored(self, stored: Any) -> Any:
        """A stored output as the model returns it; :data:`_STALE` if it no longer validates."""
        kind = self._output_type
        if kind is None or isinstance(stored, kind):
            return stored
        try:
            return kind.model_validate(stored)
        except ValidationError:
            return _STALE  # written under another output_type: a miss, not an error

    def _trim(self) -> None:
        bound = self.settings.max_entries
        if bound is None:
            return
        order = self._order
        while len(order) > bound:
            key, partition = order.popitem(last=False)
            self.store.delete(key, partition)

    def _forget(self, key: str, partition: int | None) -> None:
        self.store.delete(key, partition)
        self._order.pop(key, None)
