"""The personalization example, briefly: real broker, real MLServer serving the ranker.

Runs the example's own scenario (``examples/personalization/run.py``) against a real
``faust -A examples.personalization.app worker`` and checks what a shop would look at:
every event answered with five suggestions, the profiles in the Faust table counting
every event of their shopper, and suggestions that follow each shopper's hidden taste.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.mlserver import MLServer, copy_models
from examples.personalization.run import (
    latest_suggestions,
    prepare_ranker,
    scenario,
    taste_match,
    topics,
)
from examples.personalization.shop import make_shoppers
from tests.integration.support import unique

EVENTS = 240


@pytest.fixture(scope="module")
def ranker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    """MLServer serving a copy of the ranker (trained here only if stale: setup trains it)."""
    with MLServer(
        copy_models(tmp_path_factory.mktemp("ranker"), prepare_ranker() / "ranker")
    ) as ms:
        yield ms


async def test_every_shopper_gets_suggestions_that_follow_their_taste(kafka, ranker, start_worker):
    app_id = unique("personalization")
    env = {"KAFKA_BROKER": kafka.url, "SHOP_MODEL_URL": ranker.url, "SHOP_APP_ID": app_id}
    worker = start_worker("examples.personalization.app", env, topics(app_id))
    shoppers = make_shoppers(20, seed=7)
    run = await scenario(kafka, shoppers, EVENTS, rate=0, timeout=60)
    worker.assert_alive()

    assert run.dead == []
    assert len(run.suggestions) == EVENTS, worker.log()
    assert set(latest_suggestions(run.suggestions)) == set(run.sent)
    for s in run.suggestions:
        ids = [i["item_id"] for i in s["items"]]
        scores = [i["score"] for i in s["items"]]
        assert len(set(ids)) == 5 and scores == sorted(scores, reverse=True)
        assert s["after"]["item_id"] not in ids  # a just-seen item is not suggested again
    # Each shopper's profile in the table grew by one per event, none lost or doubled.
    seen = {}
    for s in run.suggestions:
        seen[s["user_id"]] = max(seen.get(s["user_id"], 0), s["events_seen"])
    assert seen == run.sent
    # A random category would be a favourite for 25%; the run printed 92% here.
    active = [s for s in shoppers if run.sent.get(s.id, 0) >= 5]
    assert len(active) >= 10
    assert taste_match(active, latest_suggestions(run.suggestions)) >= 0.6
