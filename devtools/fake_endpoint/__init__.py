"""A fake model server: a TEST DOUBLE for benchmarks, fault tests and request-format checks.

It speaks just enough of three protocols (OpenAI-compatible chat/embeddings,
Open Inference Protocol V2, plain JSON ``/predict``) to exercise this
library's clients, answers deterministically, and injects faults on demand:
latency and jitter, seeded random 500s, scripted 429/503/malformed/reset/stall
responses, token-bucket rate limiting and batch-size limits. It counts and
records requests so tests can assert exact request formats.

It is NOT a stand-in for real model servers in integration tests: it
validates requests loosely, computes nothing real, and its behaviour is
whatever this module says. Integration tests must use the real servers
(e.g. ``devtools.mlserver``); use this one where a real server cannot be made
fast, slow, flaky or precise on command.

Typical use::

    async with FakeEndpoint(latency=0.02) as ep:
        ep.script(429, "reset")           # next two requests fail, then normal
        ...                               # point the client at ep.url
        assert ep.stats.faults["reset"] == 1

From a benchmark, run it in its own process (``python -m devtools.fake_endpoint``)
so it never competes with the code under test for the event loop.
"""

from devtools.fake_endpoint.config import EndpointConfig, Fault, ScriptItem
from devtools.fake_endpoint.server import FakeEndpoint
from devtools.fake_endpoint.stats import RecordedRequest, Stats

__all__ = ["EndpointConfig", "FakeEndpoint", "Fault", "RecordedRequest", "ScriptItem", "Stats"]
