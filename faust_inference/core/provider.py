"""The contract between the inference core and a model provider.

A provider only says how to call one model with a batch of inputs; the core
owns batching, concurrency, timeouts, retries and fallbacks. Keeping the
contract this small (two methods and one attribute) is what lets a new
provider be one short module, and lets the core be tested with a fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from faust_inference.results import Usage

__all__ = ["Predictions", "Provider"]


@dataclass(frozen=True, slots=True)
class Predictions:
    """A provider's answer to one request: one output per input, in input order.

    Attributes:
        outputs: one output per input.
        usage: tokens the whole request consumed, if the server reported them.
        model_version: the version the server says answered, if it said.
    """

    outputs: Sequence[Any]
    usage: Usage | None = None
    model_version: str | None = None


@runtime_checkable
class Provider(Protocol):
    """How to call one remote model.

    Example:
        >>> class Doubler:
        ...     max_batch_size = None
        ...     async def infer(self, inputs):
        ...         return Predictions([2 * x for x in inputs])
        ...     async def aclose(self):
        ...         pass
        >>> isinstance(Doubler(), Provider)
        True

    Attributes:
        max_batch_size: most inputs one request may carry; 1 for providers
            whose API takes one input per call, None for no limit.
        batching: optional (False when absent): True when the protocol carries
            many inputs per request as a matter of course (Open Inference
            Protocol tensors, embeddings), so that ``batch_size="auto"``
            batches; otherwise "auto" sends one input per request.
        pooled: optional (False when absent): True when the provider spreads
            its calls over ``settings.endpoints`` (``endpoint=[...]``) and
            honours ``hedge=``, as the built-in ones do through
            ``faust_inference.providers.replica_wire``. A model registered
            with several URLs or ``hedge=`` on a provider without it is
            refused at registration rather than silently calling one URL.
    """

    max_batch_size: int | None

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """Send one request for ``inputs`` and return one output per input.

        Raises:
            ProviderError: the call failed; ``retryable`` tells whether to retry.
            InvalidInput: an input cannot be encoded for this model.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the worker stops."""
        ...
