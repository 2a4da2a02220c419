"""Remote model inference for Faust streams.

Register a model served elsewhere, score a stream through it, lose no event::

    import faust
    from faust_inference import infer, install

    app = faust.App("fraud", broker="kafka://127.0.0.1:9092")
    install(app)
    fraud = app.model("fraud", provider="kserve", endpoint="http://127.0.0.1:8080")

    @app.agent(app.topic("transactions"))
    @infer(fraud, dead_letter="transactions.dlq")
    async def score(results):
        async for r in results:
            print(r.event, r.output)

Importing this package has no side effects: nothing connects, nothing is
registered until ``install()`` and ``app.model()`` are called.
"""

from faust_inference.agent import infer
from faust_inference.app import ModelRegistry, RemoteModel, install
from faust_inference.config import (
    CacheSettings,
    CircuitBreakerSettings,
    HedgeSettings,
    ModelSettings,
    Price,
    RateLimitSettings,
    ReplicaHealthSettings,
    RetrySettings,
    Task,
)
from faust_inference.connections import Connection, ConnectionStore
from faust_inference.core.pipeline import Envelope, StreamInference
from faust_inference.core.provider import Predictions, Provider
from faust_inference.core.runner import InferenceRunner, Outcome
from faust_inference.drift import DriftMonitor
from faust_inference.exceptions import (
    CircuitOpen,
    ClientError,
    ConfigurationError,
    EndpointNotReady,
    InferenceError,
    InferenceTimeout,
    InvalidInput,
    InvalidOutput,
    ModelNotFound,
    ModelUnavailable,
    ProviderError,
    RateLimited,
    RemoteError,
    ResponseDecodeError,
    ResponseTooLarge,
    RetriesExhausted,
    ServerError,
    TransportError,
    UndecodableEvent,
)
from faust_inference.results import DeadLetter, InferenceResult, Usage

__version__ = "0.1.0"

__all__ = [
    "CacheSettings",
    "CircuitBreakerSettings",
    "CircuitOpen",
    "ClientError",
    "ConfigurationError",
    "Connection",
    "ConnectionStore",
    "DeadLetter",
    "DriftMonitor",
    "EndpointNotReady",
    "Envelope",
    "HedgeSettings",
    "InferenceError",
    "InferenceResult",
    "InferenceRunner",
    "InferenceTimeout",
    "InvalidInput",
    "InvalidOutput",
    "ModelNotFound",
    "ModelRegistry",
    "ModelSettings",
    "ModelUnavailable",
    "Outcome",
    "Predictions",
    "Price",
    "Provider",
    "ProviderError",
    "RateLimitSettings",
    "RateLimited",
    "RemoteError",
    "RemoteModel",
    "ReplicaHealthSettings",
    "ResponseDecodeError",
    "ResponseTooLarge",
    "RetriesExhausted",
    "RetrySettings",
    "ServerError",
    "StreamInference",
    "Task",
    "TransportError",
    "UndecodableEvent",
    "Usage",
    "__version__",
    "infer",
    "install",
]
