"""Amazon SageMaker real-time endpoints: ``InvokeEndpoint`` with JSON or CSV bodies.

Signed with SigV4 by botocore (:mod:`.aws`), like :mod:`.bedrock`::

    churn = app.model("churn", provider="sagemaker", region="eu-west-1",
                      remote_name="churn-xgb-prod", content_type="text/csv", batch_size=50)
    await churn.predict([42, 0, 1, 310.5])          # -> 0.93

Wire format (SageMaker Runtime API reference; botocore ``sagemaker-runtime`` model):
``POST /endpoints/{EndpointName}/invocations``, the body in the
``Content-Type`` the container reads, with optional ``X-Amzn-SageMaker-Target-Model``,
``-Target-Variant``, ``-Inference-Component`` and ``-Custom-Attributes``
headers. The answer is the container's body; the variant that answered comes
back in ``x-Amzn-Invoked-Production-Variant`` (reported as the version).

- ``application/json`` (default): a batch is sent as ``{"instances": [...]}``
  (the TensorFlow Serving / SageMaker SDK convention) and read from
  ``{"predictions": [...]}`` or a bare list; ``request_builder`` and
  ``response_parser`` adapt any other container.
- ``text/csv``: one input row per line; the answer has one line per row, or
  one line of one value per row (the built-in XGBoost and linear learner).

The host is ``https://runtime.sagemaker.{region}.amazonaws.com``; ``endpoint=``
replaces it.

Options:
    region, content_type, accept, target_model, target_variant,
    inference_component, custom_attributes, request_builder, response_parser.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import quote

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Predictions
from faust_inference.exceptions import InvalidInput, ResponseDecodeError
from faust_inference.providers.auth.sigv4 import aws_signer
from faust_inference.providers.chat import describe
from faust_inference.providers.classify import aws_error
from faust_inference.providers.endpoint import JSON, Endpoint, request_url
from faust_inference.providers.options import ProviderOptions, parse_answer, parse_options
from faust_inference.providers.structured import structured_output
from faust_inference.providers.transport import TransportPool

__all__ = ["SageMakerOptions", "SageMakerProvider", "create"]


def _instances(inputs: list[Any]) -> Any:
    return {"instances": inputs}


def _predictions(body: Any, n: int) -> Sequence[Any]:
    if isinstance(body, dict) and isinstance(body.get("predictions"), list):
        predictions: Sequence[Any] = body["predictions"]
        return predictions
    if isinstance(body, list):
        return body
    raise ValueError("expected {'predictions': [...]} or a list")


class SageMakerOptions(ProviderOptions):
    """Options of the ``sagemaker`` provider."""

    region: str | None = None
    content_type: Literal["application/json", "text/csv"] = "application/json"
    accept: str | None = None
    target_model: str | None = None
    target_variant: str | None = None
    inference_component: str | None = None
    custom_attributes: str | None = None
    request_builder: Callable[[list[Any]], Any] = _instances
    response_parser: Callable[[Any, int], Sequence[Any]] = _predictions


class SageMakerProvider:
    """One InvokeEndpoint call per batch."""

    max_batch_size: int | None = None

    def __init__(self, options: SageMakerOptions, endpoint: Endpoint) -> None:
        self.options = options
        self.endpoint = endpoint
        self.url = endpoint.url
        self.csv = options.content_type == "text/csv"
        headers = {
            "Content-Type": options.content_type,
            "Accept": options.accept or options.content_type,
        }
        for name, value in (
            ("X-Amzn-SageMaker-Target-Model", options.target_model),
            ("X-Amzn-SageMaker-Target-Variant", options.target_variant),
            ("X-Amzn-SageMaker-Inference-Component", options.inference_component),
            ("X-Amzn-SageMaker-Custom-Attributes", options.custom_attributes),
        ):
            if value:
                headers[name] = value
        self.headers = headers

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """Encode the batch, invoke the endpoint, split the answer into rows."""
        body = (
            _csv_body(inputs)
            if self.csv
            else JSON.encode(self.options.request_builder(list(inputs)))
        )
        response = await self.endpoint.send(body, self.headers)
        variant = response.headers.get("x-Amzn-Invoked-Production-Variant")
        if self.csv:
            outputs = _csv_rows(response.body, len(inputs), self.url)
        else:
            answer = self.endpoint.decode(response.body, response.headers)
            outputs = parse_answer(self.options.response_parser, answer, len(inputs), self.url)
        return Predictions(outputs, model_version=variant)

    def secrets(self) -> tuple[str, ...]:
        """The credentials this provider signs with (to scrub from messages)."""
        return self.endpoint.secrets()

    async def aclose(self) -> None:
        """The transport is shared and closed by its pool."""


def create(settings: ModelSettings, transports: TransportPool) -> SageMakerProvider:
    """Build a SageMaker provider from a model's settings."""
    options = parse_options(settings, SageMakerOptions)
    structured_output(settings, supported=False, what="the sagemaker provider")
    signer = aws_signer(settings, "sagemaker", options.region, what="the sagemaker provider")
    base = settings.endpoint or f"https://runtime.sagemaker.{signer.region}.amazonaws.com"
    url = request_url(f"{base}/endpoints/{quote(settings.target, safe='')}/invocations")
    endpoint = Endpoint.for_model(settings, transports, url, auth=signer, classify=aws_error)
    return SageMakerProvider(options, endpoint)


def _csv_body(inputs: Sequence[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for i, row in enumerate(inputs):
        values = row.tolist() if callable(getattr(row, "tolist", None)) else row
        if isinstance(values, (str, int, float)):
            values = [values]
        if not isinstance(values, (list, tuple)) or any(
            isinstance(v, (list, tuple, dict)) for v in values
        ):
            raise InvalidInput(
                "input", f"row {i}: a CSV row is a flat list of values, got {describe(row)}"
            )
        writer.writerow(values)
    return out.getvalue().encode()


def _csv_rows(data: bytes, n: int, url: str) -> list[Any]:
    lines = [line for line in data.decode("utf-8", "replace").strip().splitlines() if line]
    if len(lines) == 1 and n > 1:
        values = next(csv.reader(lines))
        if len(values) == n:
            return [_number(v) for v in values]
    if len(lines) != n:
        raise ResponseDecodeError(f"{url}: {len(lines)} CSV lines for {n} inputs")
    rows = [[_number(v) for v in values] for values in csv.reader(lines)]
    return [row[0] if len(row) == 1 else row for row in rows]


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text.strip()
