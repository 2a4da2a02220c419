"""Helpers for the observability tests: a free port and a parsed ``/metrics`` scrape."""

from __future__ import annotations

import socket
from collections.abc import Mapping

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def scrape(port: int) -> tuple[set[str], Samples]:
    """The metric family names and every sample of ``GET /metrics``."""
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, response.status
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return parse(text)


def parse(text: str) -> tuple[set[str], Samples]:
    """The metric family names and every sample of a Prometheus text exposition."""
    families = list(text_string_to_metric_families(text))
    samples: Samples = {}
    for family in families:
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return {f.name for f in families}, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for lab, v in samples.get(name, []) if _matches(lab, labels))


def _matches(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())
