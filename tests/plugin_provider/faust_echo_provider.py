"""A provider from outside faust_inference: echoes each input with a suffix.

It uses only the public provider API (``ProviderOptions``, ``parse_options``,
``Predictions``), which is all a third-party provider needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust_inference import ModelSettings, Predictions
from faust_inference.providers.base import ProviderOptions, parse_options
from faust_inference.providers.transport import TransportPool


class EchoOptions(ProviderOptions):
    """Options of the echo provider."""

    suffix: str = "!"


class EchoProvider:
    """Answers every input with the input and a suffix, a batch per call."""

    max_batch_size: int | None = None

    def __init__(self, options: EchoOptions) -> None:
        self.options = options
        self.calls = 0

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """Echo the batch."""
        self.calls += 1
        return Predictions([f"{x}{self.options.suffix}" for x in inputs])

    async def aclose(self) -> None:
        """Nothing to release."""


def create(settings: ModelSettings, transports: TransportPool) -> EchoProvider:
    """Build the echo provider from a model's settings."""
    return EchoProvider(parse_options(settings, EchoOptions))
