"""A provider from outside faust_inference: echoes each input with a suffix.

It imports only from the public provider API, ``faust_inference.providers``
(``ProviderOptions``, ``parse_options``, ``Predictions``, ``TransportPool``),
which is all a third-party provider needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.providers import Predictions, ProviderOptions, TransportPool, parse_options


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
