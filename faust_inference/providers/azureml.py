"""Azure Machine Learning managed online endpoints: ``POST /score`` with a key or a token.

::

    app.inference.connections.add(
        name="aml-prod", provider="azureml",
        endpoint="https://fraud.westeurope.inference.ml.azure.com",
        api_key_env="AZUREML_ENDPOINT_KEY",
    )
    fraud = app.model("fraud", connection="aml-prod", deployment="blue",
                      columns=["amount", "hour"], batch_size=32)
    await fraud.predict([120.0, 23])      # -> 0.91

Wire format (Azure ML "Authenticate clients for online endpoints" and
"Troubleshoot online endpoints"): ``POST {endpoint}/score`` with
``Authorization: Bearer <key or token>``; ``azureml-model-deployment:
<deployment>`` routes to one deployment instead of the traffic split. The
body is what the deployment's scoring script reads:

- ``format="mlflow"`` (default; MLflow models deployed without a script):
  ``{"input_data": {"columns": [...], "index": [...], "data": [[...], ...]}}``,
  answered by a list of predictions (or ``{"predictions": [...]}``);
- ``format="custom"``: ``request_builder`` / ``response_parser`` (default
  ``{"data": [...]}`` in, a list or ``{"predictions"|"outputs": [...]}`` out).

Authentication (see :mod:`.azure`): an endpoint key (``auth_mode: key``) or an
Entra ID token for ``https://ml.azure.com/.default`` (``aad_token``). A
failing model container comes back as 424 with its own status in
``ms-azureml-model-error-statuscode``, which decides whether to retry.

Options:
    deployment: the deployment to call (default: the model's ``version``, if any).
    format: ``mlflow`` or ``custom``.
    columns: column names of the MLflow input frame.
    request_builder, response_parser: the ``custom`` body and answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Predictions
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.auth.entra import ML_SCOPE, azure_auth
from faust_inference.providers.classify import azure_error
from faust_inference.providers.endpoint import Endpoint
from faust_inference.providers.options import ProviderOptions, parse_answer, parse_options
from faust_inference.providers.structured import structured_output
from faust_inference.providers.transport import TransportPool

__all__ = ["AzureMLOptions", "AzureMLProvider", "create"]


def _data(inputs: list[Any]) -> Any:
    return {"data": inputs}


def _predictions(body: Any, n: int) -> Sequence[Any]:
    if isinstance(body, dict):
        for key in ("predictions", "outputs", "output"):
            if isinstance(body.get(key), list):
                found: Sequence[Any] = body[key]
                return found
    if isinstance(body, list):
        return body
    raise ValueError("expected a list, or {'predictions': [...]}")


class AzureMLOptions(ProviderOptions):
    """Options of the ``azureml`` provider."""

    deployment: str | None = None
    format: Literal["mlflow", "custom"] = "mlflow"
    columns: list[str] | None = None
    request_builder: Callable[[list[Any]], Any] = _data
    response_parser: Callable[[Any, int], Sequence[Any]] = _predictions


class AzureMLProvider:
    """One scoring request per batch."""

    max_batch_size: int | None = None

    def __init__(self, options: AzureMLOptions, endpoint: Endpoint) -> None:
        self.options = options
        self.endpoint = endpoint
        self.url = endpoint.url

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """Score a batch."""
        rows = list(inputs)
        if self.options.format == "mlflow":
            frame: dict[str, Any] = {"index": list(range(len(rows))), "data": rows}
            if self.options.columns:
                frame = {"columns": self.options.columns, **frame}
            body: Any = {"input_data": frame}
        else:
            body = self.options.request_builder(rows)
        answer = await self.endpoint.post(body)
        return Predictions(parse_answer(self.options.response_parser, answer, len(rows), self.url))

    def secrets(self) -> tuple[str, ...]:
        """The credentials this provider sends (to scrub from messages)."""
        return self.endpoint.secrets()

    async def aclose(self) -> None:
        """The transport is shared and closed by its pool."""


def create(settings: ModelSettings, transports: TransportPool) -> AzureMLProvider:
    """Build an Azure ML online-endpoint provider from a model's settings."""
    options = parse_options(settings, AzureMLOptions)
    if settings.endpoint is None:
        raise ConfigurationError(
            f"model {settings.name!r} (azureml) needs endpoint= (the scoring URI, "
            "https://<endpoint>.<region>.inference.ml.azure.com), on the model or its connection"
        )
    structured_output(settings, supported=False, what="the azureml provider")
    base = settings.endpoint
    url = base if base.endswith("/score") else f"{base}/score"
    auth = azure_auth(
        settings,
        scope=ML_SCOPE,
        default_env="AZUREML_API_KEY",
        key_header="Authorization",
        key_scheme="Bearer",
        what="the azureml provider",
    )
    headers = dict(auth.headers)
    deployment = options.deployment or settings.version  # a deployment is a served version
    if deployment:
        headers["azureml-model-deployment"] = deployment
    endpoint = Endpoint.for_model(
        settings,
        transports,
        url,
        headers=headers,
        secrets=auth.secrets,
        auth=auth.token,
        classify=azure_error,
    )
    return AzureMLProvider(options, endpoint)
