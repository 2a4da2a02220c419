"""Open Inference Protocol V2 (KServe V2): MLServer, KServe, Triton, Seldon.

Each event's input is one row; a batch is the rows stacked along a new first
dimension, sent as one tensor, and the answer is split back into rows::

    fraud = app.model(
        "fraud", provider="kserve", endpoint="http://127.0.0.1:8080",
        version="v1", batch_size=16, input_name="features",
    )
    await fraud.predict([0.1] * 10)        # -> [p_legit, p_fraud]

An input may also be a mapping of tensor name to row, for models with
several inputs; with several requested outputs, each output is a mapping of
output name to row.

Options:
    input_name: tensor name for single-tensor inputs (default ``input-0``).
    shape: the shape of one row (``[10]`` for ten features); when set, a row
        of another shape is rejected before it is sent, naming both shapes.
        Servers often answer a wrong shape with a bare 500 (MLServer does).
    datatype: force a datatype (``FP32``, ``INT64`` ...); inferred otherwise.
    outputs: names of the outputs to request; all of them when unset.
    version_in_path: put ``/versions/{version}`` in the URL when a version
        is registered (default true; turn off for servers without versions).
    parameters: request-level ``parameters`` object, sent as is.
    protocol: ``"rest"`` (default) or ``"grpc"``: the protocol's gRPC service
        (:mod:`.oip_grpc`, ``pip install 'faust-inference[grpc]'``); then
        ``endpoint=`` is the server's gRPC address, ``http://host:8081``.
    binary: send tensors as raw bytes over REST, the binary tensor data
        extension (:mod:`.oip_binary`): Triton takes it, MLServer's REST
        server does not (use ``protocol="grpc"`` there, always raw).
    compression: ``"gzip"`` compresses request bodies (REST: from 1 KiB;
        gRPC: every message); MLServer and Triton accept it.

``endpoint=[url, url, ...]`` makes a replica pool
(:mod:`.pool`: least-in-flight, ejection, ``hedge=``).

``endpoint=`` is the server's root (``http://127.0.0.1:8080``): the provider
adds ``/v2/models/...``. An endpoint that already ends in ``/v2`` or
``/v2/models/...`` is refused at registration, naming the root to give.

Readiness: ``await provider.ready()`` asks ``GET
/v2/models/{name}[/versions/{version}]/ready``; a 404 there is
:class:`~faust_inference.ModelNotFound` naming the URL tried, an answer
saying the model is still loading (400, 5xx) is
:class:`~faust_inference.EndpointNotReady`. During the run, a 404 for the
model is :class:`~faust_inference.ModelUnavailable` (an outage, retried).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Predictions
from faust_inference.exceptions import (
    ConfigurationError,
    InvalidInput,
    ResponseDecodeError,
)
from faust_inference.providers.auth.keys import resolve_api_key
from faust_inference.providers.chat import describe
from faust_inference.providers.classify import model_route_error
from faust_inference.providers.endpoint import Endpoint
from faust_inference.providers.oip_binary import OipRestEndpoint
from faust_inference.providers.oip_grpc import OipGrpcEndpoint
from faust_inference.providers.options import ProviderOptions, parse_options
from faust_inference.providers.pool import PoolEndpoint, replica_secrets, replica_wire
from faust_inference.providers.readiness import check_ready, ready_on_any
from faust_inference.providers.redaction import redact_url
from faust_inference.providers.structured import structured_output
from faust_inference.providers.transport import TransportPool

__all__ = ["KServeOptions", "KServeProvider", "create"]

Datatype = Literal[
    "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "FP16", "FP32", "FP64", "BYTES"
]


class KServeOptions(ProviderOptions):
    """Options of the ``kserve`` provider."""

    input_name: str = "input-0"
    shape: list[int] | None = None
    datatype: Datatype | None = None
    outputs: list[str] | None = None
    version_in_path: bool = True
    parameters: dict[str, Any] | None = None
    protocol: Literal["rest", "grpc"] = "rest"
    binary: bool = False
    compression: Literal["gzip"] | None = None


class KServeProvider:
    """Calls ``POST /v2/models/{name}[/versions/{version}]/infer``."""

    max_batch_size: int | None = None
    batching = True
    """Rows stack into one tensor: ``batch_size="auto"`` batches."""
    pooled = True
    """Balances ``endpoint=[...]`` replicas and hedges (:func:`.pool.replica_wire`)."""

    def __init__(
        self,
        options: KServeOptions,
        endpoint: Endpoint,
        model: str = "",
        *,
        wire: PoolEndpoint | None = None,
        replicas: Sequence[tuple[Endpoint, PoolEndpoint]] = (),
    ) -> None:
        self.options = options
        self.endpoint = endpoint
        self.url = endpoint.url
        self.model = model
        self.wire: PoolEndpoint = wire or endpoint
        """What requests go through: the endpoint, its binary/gzip or gRPC form, or a pool."""
        self._replicas = list(replicas) or [(endpoint, self.wire)]
        self._expected_shape = tuple(options.shape) if options.shape is not None else None
        self._requested = [{"name": n} for n in options.outputs] if options.outputs else None

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """One V2 request for the stacked rows."""
        body: dict[str, Any] = {"inputs": self._encode(inputs)}
        if self._requested:
            body["outputs"] = self._requested
        if self.options.parameters:
            body["parameters"] = self.options.parameters
        answer = await self.wire.post(body)
        return Predictions(self._decode(answer, len(inputs)), model_version=_version(answer))

    async def ready(self) -> None:
        """Check that the server serves this model (``GET .../ready``).

        Raises:
            ModelNotFound: the server answers, but has no such model (or path).
            EndpointNotReady: the model is known but still loading, or 5xx.
            TransportError: the server is not reachable.

        With several replicas, one that is ready is enough; a missing model
        on any of them is a configuration error all the same.
        """
        await ready_on_any(self._ready_one(e, w) for e, w in self._replicas)

    async def _ready_one(self, endpoint: Endpoint, wire: PoolEndpoint) -> None:
        if isinstance(wire, OipGrpcEndpoint):
            await wire.ready()
            return
        await check_ready(
            endpoint,
            endpoint.url.removesuffix("/infer") + "/ready",
            model=self.model,
            fixes=(
                "remote_name= and version= must name a model the server loaded "
                "(version_in_path=False for servers without versions), and endpoint= "
                "must be the server's root, without /v2"
            ),
        )

    def secrets(self) -> tuple[str, ...]:
        """The credentials this provider sends, to every replica (to scrub from messages)."""
        return replica_secrets(e for e, _ in self._replicas)

    async def aclose(self) -> None:
        """Close gRPC channels; HTTP transports are shared and closed by their pool."""
        close = getattr(self.wire, "aclose", None)
        if close is not None:
            await close()

    # -- encoding -----------------------------------------------------------------

    def _encode(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        first = inputs[0]
        if isinstance(first, dict):
            names = list(first)
            for i, row in enumerate(inputs):
                if not isinstance(row, dict) or list(row) != names:
                    raise InvalidInput(
                        "input", f"row {i} has tensors {describe(row)}, expected {names}"
                    )
            return [self._tensor(n, [row[n] for row in inputs]) for n in names]
        return [self._tensor(self.options.input_name, inputs)]

    def _tensor(self, name: str, rows: Sequence[Any]) -> dict[str, Any]:
        row_shape = _shape(rows[0], name)
        expected = self._expected_shape
        if expected is not None and row_shape != expected:
            raise InvalidInput(
                name,
                f"expected a row of shape {list(expected)}, got shape {list(row_shape)} "
                f"({describe(rows[0])}); fix the preprocessor or the model's shape option",
            )
        data: list[Any] = []
        for row in rows:
            if _shape(row, name) != row_shape:
                raise InvalidInput(
                    name,
                    f"every row must have shape {list(row_shape)}, got {describe(row)}; "
                    "pad or fix the preprocessor",
                )
            _flatten_into(row, data)
        datatype = self.options.datatype or _datatype(data, name)
        return {"name": name, "shape": [len(rows), *row_shape], "datatype": datatype, "data": data}

    # -- decoding -----------------------------------------------------------------

    def _decode(self, answer: Any, n: int) -> list[Any]:
        if not isinstance(answer, dict) or not isinstance(answer.get("outputs"), list):
            raise self.endpoint.bad_answer("answer has no 'outputs' list", answer)
        outputs = answer["outputs"]
        if self.options.outputs:
            by_name = {o.get("name"): o for o in outputs if isinstance(o, dict)}
            missing = [name for name in self.options.outputs if name not in by_name]
            if missing:
                raise ResponseDecodeError(f"{self.url}: answer lacks outputs {missing}")
            outputs = [by_name[name] for name in self.options.outputs]
        if not outputs:
            raise ResponseDecodeError(f"{self.url}: answer has no outputs")
        columns = [(o.get("name"), _rows(o, n, self.url)) for o in outputs]
        if len(columns) == 1:
            return columns[0][1]
        return [{name: col[i] for name, col in columns} for i in range(n)]


def create(settings: ModelSettings, transports: TransportPool) -> KServeProvider:
    """Build a KServe provider from a model's settings."""
    options = parse_options(settings, KServeOptions)
    structured_output(settings, supported=False, what="the kserve provider (tensors)")
    if settings.endpoint is None:
        raise ConfigurationError(
            f"model {settings.name!r}: the kserve provider needs endpoint= "
            "(for example http://127.0.0.1:8080)"
        )
    for given in settings.replica_urls:
        root = _V2_SUFFIX.sub("", given)
        if root != given:
            raise ConfigurationError(
                f"model {settings.name!r}: endpoint={redact_url(given)!r} already contains the "
                f"protocol's path; give the server's root, endpoint={redact_url(root)!r}: the "
                "provider "
                "adds /v2/models/{remote_name}[/versions/{version}]/infer itself"
            )
    path = f"/v2/models/{quote(settings.target, safe='')}"
    if settings.version and options.version_in_path:
        path += f"/versions/{quote(settings.version, safe='')}"
    key = resolve_api_key(settings, default_env=None, required=False)
    replicas = []
    for root in settings.replica_urls:
        endpoint = Endpoint.for_model(
            settings, transports, f"{root}{path}/infer", key=key, classify=model_route_error
        )
        replicas.append((endpoint, _wire(settings, options, root, endpoint)))
    wire = replica_wire(settings, [w for _, w in replicas])
    return KServeProvider(options, replicas[0][0], settings.target, wire=wire, replicas=replicas)


def _wire(
    settings: ModelSettings, options: KServeOptions, root: str, endpoint: Endpoint
) -> PoolEndpoint:
    """The wire format the options chose, for one replica."""
    if options.protocol == "grpc":
        return OipGrpcEndpoint(
            root,
            settings.target,
            settings.version if options.version_in_path else None,
            metadata=endpoint.headers,
            secrets=endpoint.secrets(),
            compression=options.compression,
        )
    if options.binary or options.compression:
        return OipRestEndpoint(endpoint, binary=options.binary, compression=options.compression)
    return endpoint


# ``/v2``, ``/v2/models``, ``/v2/models/m[/versions/v][/infer|/ready]`` at the end.
_V2_SUFFIX = re.compile(r"/v2(/models(/[^/]+(/versions/[^/]+)?(/infer|/ready)?)?)?/?$")


def _version(answer: Any) -> str | None:
    version = answer.get("model_version") if isinstance(answer, dict) else None
    return str(version) if version is not None else None


def _shape(row: Any, name: str) -> tuple[int, ...]:
    if isinstance(row, (list, tuple)):
        if not row:
            raise InvalidInput(name, "a row is empty; send at least one value")
        return (len(row), *_shape(row[0], name))
    tolist = getattr(row, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return _shape(tolist(), name)
    if isinstance(row, (int, float, str, bool)):
        return ()
    raise InvalidInput(
        name, f"expected numbers, strings or lists of them, got {type(row).__name__}"
    )


def _flatten_into(row: Any, out: list[Any]) -> None:
    if isinstance(row, (list, tuple)):
        if row and not isinstance(row[0], (list, tuple)):
            out.extend(row)
        else:
            for item in row:
                _flatten_into(item, out)
    elif callable(getattr(row, "tolist", None)):
        _flatten_into(row.tolist(), out)
    else:
        out.append(row)


def _datatype(data: list[Any], name: str) -> str:
    kinds = {type(v) for v in data}
    if kinds <= {bool}:
        return "BOOL"
    if kinds <= {int}:
        return "INT64"
    if kinds <= {int, float}:
        if any(isinstance(v, float) and not math.isfinite(v) for v in data):
            raise InvalidInput(name, "NaN or infinity cannot be sent as JSON; impute it first")
        return "FP64"
    if kinds <= {str}:
        return "BYTES"
    found = ", ".join(sorted(k.__name__ for k in kinds))
    raise InvalidInput(name, f"values must all be numbers, booleans or strings, got {found}")


def _rows(output: Any, n: int, url: str) -> list[Any]:
    """Split one output tensor of shape [n, ...] into n rows."""
    try:
        shape = [int(d) for d in output["shape"]]
        data = output["data"]
    except (KeyError, TypeError, ValueError):
        raise ResponseDecodeError(f"{url}: an output lacks 'shape' or 'data'") from None
    if data and isinstance(data[0], list):  # the nested form is allowed too
        flat: list[Any] = []
        _flatten_into(data, flat)
        data = flat
    if not shape or shape[0] != n:
        raise ResponseDecodeError(f"{url}: output shape {shape} does not start with {n} rows")
    per_row = math.prod(shape[1:])
    if len(data) != n * per_row:
        raise ResponseDecodeError(f"{url}: output of shape {shape} has {len(data)} values")
    if len(shape) == 1:
        return list(data)
    rows = [data[i * per_row : (i + 1) * per_row] for i in range(n)]
    if len(shape) > 2:
        rows = [_reshape(r, shape[2:]) for r in rows]
    return rows


def _reshape(flat: list[Any], inner: list[int]) -> list[Any]:
    step = math.prod(inner)
    return [
        _reshape(flat[i * step : (i + 1) * step], inner[1:])
        if len(inner) > 1
        else flat[i * step : (i + 1) * step]
        for i in range(len(flat) // step)
    ]
