"""Faust alone, no faust-inference: a table, and an agent that forwards each event.

Used by ``scripts/faust_race/run.py`` to show events lost by Faust 0.15 when a
worker starts on a topic without committed offsets while it recovers a table.
"""

import os

import faust

env = os.environ.get
app = faust.App(
    env("RACE_APP_ID", "faust-race"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    web_enabled=False,
    broker_commit_interval=1.0,
    topic_disable_leader=True,
    topic_partitions=4,
    producer_linger=0.005,
)
table = app.Table("seen", partitions=4)
source = app.topic(env("RACE_IN", "race-in"), value_serializer="json")
sink = app.topic(env("RACE_OUT", "race-out"), value_serializer="json")


@app.agent(source)
async def forward(stream):  # type: ignore[no-untyped-def]
    """Record each event in the table and forward its id."""
    async for event in stream:
        table[str(event["id"])] = event["x"]  # fills the changelog the next start recovers
        await sink.send(value={"id": event["id"]})
