"""infer() inside a Faust agent, with Faust's own test context (no broker)."""

import asyncio

import faust
import pytest

from faust_inference import (
    ConfigurationError,
    InferenceRunner,
    ModelSettings,
    RemoteModel,
    infer,
    install,
)
from tests.unit.fakes import FakeClock, FakeProvider


class Tx(faust.Record):
    id: str
    amount: float


def fake_model(**settings):
    s = ModelSettings(name="double", provider="fake", batch_timeout=0, **settings)
    model = RemoteModel(s, InferenceRunner(FakeProvider(), s, clock=FakeClock()))
    model.preprocess(lambda tx: tx.amount)
    return model


@pytest.fixture
def app():
    app = faust.App("test-agent", broker="kafka://127.0.0.1:1", store="memory://")
    install(app)
    return app


@pytest.mark.asyncio
async def test_agent_receives_one_result_per_event(app):
    model = fake_model()
    seen = []

    @app.agent(app.topic("txs", value_type=Tx))
    @infer(model)
    async def score(results):
        async for r in results:
            seen.append((r.event.id, r.output, r.model))

    async with score.test_context() as agent:
        await agent.put(Tx(id="a", amount=1.5))
        await agent.put(Tx(id="b", amount=4.0))
        await until(lambda: len(seen) == 2)
    assert seen == [("a", 3.0, "double"), ("b", 8.0, "double")]
    await model.aclose()


@pytest.mark.asyncio
async def test_yielding_agents_stay_yielding(app):
    model = fake_model()

    @app.agent(app.topic("txs2", value_type=Tx))
    @infer(model)
    async def score(results):
        async for r in results:
            yield r.output

    assert score.name.endswith(".score")
    async with score.test_context() as agent:
        await agent.put(Tx(id="a", amount=2.0))
        await agent.put(Tx(id="b", amount=3.0))
        await until(lambda: len(agent.results) == 2)
        assert list(agent.results.values()) == [4.0, 6.0]
    await model.aclose()


@pytest.mark.asyncio
async def test_events_are_acked_after_the_agent_is_done_with_them(app):
    model = fake_model()
    acked_when_seen = []
    events = []
    release = asyncio.Event()

    @app.agent(app.topic("txs3", value_type=Tx))
    @infer(model)
    async def score(results):
        async for r in results:
            acked_when_seen.append(events[r.offset].message.acked)
            if r.event.id == "c":
                await release.wait()  # the agent is still working on "c"

    async with score.test_context() as agent:
        for tx_id in "abc":
            events.append(await agent.put(Tx(id=tx_id, amount=1.0)))
        await until(lambda: len(acked_when_seen) == 3)
        assert acked_when_seen == [False, False, False]
        assert [e.message.acked for e in events] == [True, True, False]
        release.set()
        await until(lambda: events[2].message.acked)
    await model.aclose()


async def until(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_the_preprocessor_may_be_registered_after_the_agent(app):
    s = ModelSettings(name="late", provider="fake", batch_timeout=0)
    model = RemoteModel(s, InferenceRunner(FakeProvider(), s, clock=FakeClock()))
    seen = []

    @app.agent(app.topic("txs4", value_type=Tx))
    @infer(model)
    async def score(results):
        async for r in results:
            seen.append(r.output)

    @model.preprocess
    def amount(tx):
        return tx.amount

    async with score.test_context() as agent:
        await agent.put(Tx(id="a", amount=5.0))
        await until(lambda: len(seen) == 1)
    assert seen == [10.0]
    await model.aclose()


@pytest.mark.parametrize("max_pending", [0, -5, 2.5, True])
def test_a_bad_max_pending_is_refused_when_decorating(max_pending):
    with pytest.raises(ConfigurationError, match="max_pending"):
        infer(fake_model(), max_pending=max_pending)


def test_infer_wants_the_registered_model_not_its_name():
    with pytest.raises(ConfigurationError, match=r"app\.inference\['double'\]"):
        infer("double")
