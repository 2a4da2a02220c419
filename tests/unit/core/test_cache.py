import asyncio

import pytest

from faust_inference import (
    CacheSettings,
    ClientError,
    Envelope,
    InvalidInput,
    ModelSettings,
    ServerError,
)
from faust_inference.core.cache import MemoryStore, ResultCache, cache_digest
from faust_inference.core.hooks import InferenceHooks
from faust_inference.core.pipeline import StreamInference
from faust_inference.core.runner import InferenceRunner
from tests.unit.fakes import FakeClock, FakeProvider


class WallClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class CacheEvents(InferenceHooks):
    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_cache(self, settings, hit):
        self.seen.append(hit)


def make(provider=None, *, version=None, clock=None, hooks=None, **cache):
    provider = provider or FakeProvider()
    settings = ModelSettings(
        name="m", provider="fake", version=version, batch_timeout=0.0, max_concurrency=8
    )
    runner = InferenceRunner(provider, settings, clock=FakeClock(), hooks=hooks)
    store = MemoryStore()
    return (
        ResultCache(runner, CacheSettings(**cache), store, now=clock or WallClock()),
        provider,
        store,
    )


async def test_a_repeated_input_is_answered_without_a_call():
    cache, provider, _ = make()
    first = await cache.submit(21, partition=0)
    second = await cache.submit(21, partition=0)
    assert (first.output, first.cached, first.attempts) == (42, False, 1)
    assert (second.output, second.cached, second.attempts) == (42, True, 0)
    assert provider.batches == [[21]]
    assert (cache.hits, cache.misses) == (1, 1)
    await cache.runner.aclose()


async def test_identical_inputs_in_flight_share_one_call():
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    cache, _, _ = make(provider)
    futures = [cache.submit(v, partition=0) for v in (1, 2, 1, 1, 2)]
    await asyncio.sleep(0.01)
    provider.gate.set()
    outcomes = await asyncio.gather(*futures)
    assert [o.output for o in outcomes] == [2, 4, 2, 2, 4]
    sent = sorted(x for batch in provider.batches for x in batch)
    assert sent == [1, 2]
    assert (cache.misses, cache.coalesced, cache.hits) == (5, 3, 0)
    await cache.runner.aclose()


async def test_coalescing_can_be_turned_off():
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    cache, _, _ = make(provider, coalesce=False)
    futures = [cache.submit(1, partition=0) for _ in range(3)]
    await asyncio.sleep(0.01)
    provider.gate.set()
    await asyncio.gather(*futures)
    assert sum(len(b) for b in provider.batches) == 3
    await cache.runner.aclose()


async def test_entries_expire_after_the_ttl():
    clock = WallClock()
    cache, provider, store = make(clock=clock, ttl=60)
    await cache.submit(5, partition=0)
    clock.now += 59
    assert (await cache.submit(5, partition=0)).cached
    clock.now += 2
    assert not (await cache.submit(5, partition=0)).cached
    assert len(provider.batches) == 2
    assert len(store.data) == 1  # the expired entry was replaced, not kept twice
    await cache.runner.aclose()


async def test_the_oldest_entries_are_evicted_beyond_the_bound():
    clock = WallClock()
    cache, _, store = make(clock=clock, max_entries=3)
    for v in range(5):
        clock.now += 1
        await cache.submit(v, partition=0)
    assert len(store.data) == 3
    assert {cache.key(v) for v in (2, 3, 4)} == set(store.data)
    assert not (await cache.submit(0, partition=0)).cached
    assert (await cache.submit(4, partition=0)).cached
    await cache.runner.aclose()


async def test_a_new_version_or_namespace_never_reads_old_entries():
    old, _, store = make(version="v1")
    await old.submit(3, partition=0)
    for settings in ({"version": "v2"}, {"version": "v1", "namespace": "after-fix"}):
        provider = FakeProvider(lambda x: x * 10)
        version = settings.pop("version")
        new = ResultCache(
            InferenceRunner(
                provider,
                ModelSettings(name="m", provider="fake", version=version, batch_timeout=0),
                clock=FakeClock(),
            ),
            CacheSettings(**settings),
            store,
        )
        outcome = await new.submit(3, partition=0)
        assert (outcome.output, outcome.cached) == (30, False)
        await new.runner.aclose()
    await old.runner.aclose()


async def test_fallback_answers_are_not_cached():
    provider = FakeProvider()
    provider.script.extend([ServerError("down", status=503)] * 8)
    store = MemoryStore()
    runner = InferenceRunner(
        provider,
        ModelSettings(
            name="m", provider="fake", retries=0, default_output="unknown", batch_timeout=0
        ),
        clock=FakeClock(),
    )
    cache = ResultCache(runner, CacheSettings(), store)
    outcome = await cache.submit(1, partition=0)
    assert (outcome.output, outcome.fallback) == ("unknown", True)
    assert store.data == {}
    await runner.aclose()


async def test_failures_are_not_cached_and_the_next_request_calls_again():
    provider = FakeProvider()
    provider.script.append(ClientError("bad", status=400))
    cache, _, store = make(provider)
    with pytest.raises(ClientError):
        await cache.submit(1, partition=0)
    assert store.data == {}
    assert (await cache.submit(1, partition=0)).output == 2
    await cache.runner.aclose()


async def test_an_input_without_a_stable_encoding_fails_with_the_field_and_the_fix():
    cache, provider, _ = make()
    with pytest.raises(InvalidInput) as caught:
        await cache.submit({1, 2}, partition=0)
    message = str(caught.value)
    assert "input" in message and "JSON-compatible" in message and "cache=" in message
    assert provider.batches == []
    await cache.runner.aclose()


def test_digest_ignores_key_order_and_tells_types_apart():
    assert cache_digest({"a": 1, "b": [1.5, "x"]}) == cache_digest({"b": [1.5, "x"], "a": 1})
    assert cache_digest([1, 2]) != cache_digest([2, 1])
    assert cache_digest("1") != cache_digest(1)
    assert len(cache_digest("x")) == 32


async def test_clear_removes_this_models_entries_only():
    cache, _, store = make()
    await cache.submit(1, partition=0)
    store.data["other|||abc"] = {"output": 0, "at": 0}
    assert cache.clear() == 1
    assert list(store.data) == ["other|||abc"]
    assert not (await cache.submit(1, partition=0)).cached
    await cache.runner.aclose()


async def test_rebuild_drops_expired_entries_and_applies_the_bound():
    clock = WallClock()
    cache, _, store = make(clock=clock, ttl=100, max_entries=2)
    prefix = cache.key(0)[:-32]
    store.data.update(
        {
            prefix + "a" * 32: {"output": 1, "at": clock.now - 500, "p": 0},
            prefix + "b" * 32: {"output": 2, "at": clock.now - 30, "p": 1},
            prefix + "c" * 32: {"output": 3, "at": clock.now - 20, "p": 0},
            prefix + "d" * 32: {"output": 4, "at": clock.now - 10, "p": 1},
        }
    )
    cache.rebuild()
    assert sorted(store.data) == [prefix + "c" * 32, prefix + "d" * 32]
    await cache.runner.aclose()


async def test_hits_and_misses_reach_the_hooks():
    hooks = CacheEvents()
    cache, _, _ = make(hooks=hooks)
    await cache.submit(1, partition=0)
    await cache.submit(1, partition=0)
    assert hooks.seen == [False, True]
    await cache.runner.aclose()


async def test_pipeline_results_say_whether_they_came_from_the_cache():
    cache, provider, _ = make()

    async def events():
        for i, v in enumerate([7, 8, 7, 7]):
            yield Envelope(value=v, lane=0, handle=i, partition=0, offset=i)
            await asyncio.sleep(0.01)  # let the first call finish: hits, not coalescing

    async def ack(envelope):
        pass

    got = [r async for r in StreamInference(cache.runner, events(), ack=ack, cache=cache)]
    assert [(r.event, r.output, r.cached) for r in got] == [
        (7, 14, False),
        (8, 16, False),
        (7, 14, True),
        (7, 14, True),
    ]
    assert len(provider.batches) == 2
    await cache.runner.aclose()


async def test_pipeline_dead_letters_an_uncacheable_input_and_goes_on():
    cache, _, _ = make()
    letters = []

    async def events():
        for i, v in enumerate([1, {3}, 2]):
            yield Envelope(value=v, lane=0, handle=i, partition=0, offset=i)

    async def ack(envelope):
        pass

    async def dead(envelope, error):
        letters.append((envelope.offset, type(error).__name__))

    got = [
        r.output
        async for r in StreamInference(
            cache.runner, events(), ack=ack, cache=cache, dead_letter=dead
        )
    ]
    assert got == [2, 4]
    assert letters == [(1, "InvalidInput")]
    await cache.runner.aclose()


class JsonStore(MemoryStore):
    """Keeps what a table's changelog keeps: the entry encoded as JSON and decoded again."""

    def put(self, key, entry, partition):
        import orjson

        self.data[key] = orjson.loads(orjson.dumps(entry))  # TypeError if not JSON
        return True


async def test_structured_outputs_are_stored_as_json_and_come_back_as_their_type():
    from pydantic import BaseModel

    class Ticket(BaseModel):
        priority: int
        team: str

    class Renamed(BaseModel):
        severity: int  # another output_type: old entries no longer fit

    provider = FakeProvider(lambda x: Ticket(priority=x, team="billing"))
    settings = ModelSettings(
        name="m", provider="fake", batch_timeout=0.0, max_concurrency=8, output_type=Ticket
    )
    runner = InferenceRunner(provider, settings, clock=FakeClock())
    store = JsonStore()
    cache = ResultCache(runner, CacheSettings(), store, now=WallClock())
    first = await cache.submit(3, partition=0)
    second = await cache.submit(3, partition=0)
    assert not first.cached and second.cached
    assert second.output == Ticket(priority=3, team="billing")
    assert [e["output"] for e in store.data.values()] == [{"priority": 3, "team": "billing"}]
    await runner.aclose()

    provider2 = FakeProvider(lambda x: Renamed(severity=x))
    settings2 = settings.model_copy(update={"output_type": Renamed})
    runner2 = InferenceRunner(provider2, settings2, clock=FakeClock())
    cache2 = ResultCache(runner2, CacheSettings(), store, now=WallClock())
    third = await cache2.submit(3, partition=0)
    assert not third.cached and third.output == Renamed(severity=3)
    assert provider2.batches == [[3]]
    await runner2.aclose()
