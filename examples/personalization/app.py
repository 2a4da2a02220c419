"""Suggest products to each shopper from their clicks, ranked by a model on MLServer.

Run it as any Faust app::

    KAFKA_BROKER=kafka://127.0.0.1:9092 SHOP_MODEL_URL=http://127.0.0.1:8080 \
        faust -A examples.personalization.app worker -l info

Two agents:

* ``track`` reads ``clicks`` (keyed by shopper), folds each event into the shopper's
  profile in the ``shopper-profiles`` table (changelog-backed: a restarted or
  rebalanced worker gets the profiles back), picks 20 candidate items and sends a
  ranking request to ``rank-requests``, keyed by shopper too (co-partitioned).
* ``rank`` scores each request's 20 candidates in one call to the ``ranker`` model
  (a scikit-learn classifier behind MLServer, Open Inference Protocol V2), batched
  with other shoppers' requests, and sends the ``SHOP_TOP_N`` best to ``suggestions``.
  Requests the model cannot score after its retries go to ``rank-requests.dlq``.
"""

from __future__ import annotations

import os
from typing import Any

import faust

from examples.personalization.shop import (
    CATALOG,
    CATEGORIES,
    FEATURES,
    N_CANDIDATES,
    candidate_rows,
    candidates,
    update_profile,
)
from faust_inference import infer, install

__all__ = ["Click", "RankRequest", "app", "rank", "ranker", "track"]

env = os.environ.get

app = faust.App(
    env("SHOP_APP_ID", "personalization"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    topic_partitions=4,
    web_enabled=False,
)
install(app)

TOP_N = int(env("SHOP_TOP_N", "5"))


class Click(faust.Record, serializer="json"):
    """A shopper's event: ``action`` is view, click, add_to_cart or purchase."""

    id: str
    user_id: str
    item_id: str
    action: str
    ts: float


class RankRequest(faust.Record, serializer="json"):
    """The shopper's profile just after ``click`` and the candidates to rank for them."""

    click: Click
    profile: dict[str, Any]
    candidates: list[str]


clicks = app.topic("clicks", value_type=Click)
rank_requests = app.topic("rank-requests", value_type=RankRequest)
suggestions = app.topic("suggestions", value_serializer="json")
profiles = app.Table("shopper-profiles", default=dict, partitions=4)

ranker = app.model(
    "ranker",
    provider="kserve",
    endpoint=env("SHOP_MODEL_URL", "http://127.0.0.1:8080"),
    remote_name="ranker",
    version="v1",
    input_name="candidates",
    shape=[N_CANDIDATES, len(FEATURES)],  # one slate per event
    max_concurrency=8,
    batch_size=8,  # slates per request
    batch_timeout=0.01,
    timeout=2.0,
    retries=3,
)


@ranker.preprocess
def slate(request: RankRequest) -> list[list[float]]:
    return candidate_rows(request.profile, request.candidates)


@app.agent(clicks)
async def track(stream):  # type: ignore[no-untyped-def]
    async for click in stream:
        profile = update_profile(profiles[click.user_id], click.item_id, click.action)
        profiles[click.user_id] = profile
        await rank_requests.send(
            key=click.user_id,
            value=RankRequest(click=click, profile=profile, candidates=candidates(profile)),
        )


@app.agent(rank_requests)
@infer(ranker, dead_letter="rank-requests.dlq")
async def rank(results):  # type: ignore[no-untyped-def]
    async for r in results:
        click = r.event.click
        ranked = sorted(zip(r.event.candidates, r.output, strict=True), key=lambda p: -p[1])
        await suggestions.send(
            key=click.user_id,
            value={
                "user_id": click.user_id,
                "click_id": click.id,
                "after": {"item_id": click.item_id, "action": click.action},
                "events_seen": r.event.profile.get("events", 0),  # the profile's, so far
                "items": [
                    {
                        "item_id": item,
                        "category": CATEGORIES[CATALOG[item].category],
                        "score": round(score, 4),
                    }
                    for item, score in ranked[:TOP_N]
                ],
                "model": r.model,
                "version": r.version,
                "latency_ms": round(r.latency_s * 1000, 2),
            },
        )
