"""Start-up checks that a model is served where it was registered.

A provider whose protocol has a readiness call implements
``async def ready(self) -> None`` with these helpers; the worker calls it
once per model before consuming. The answer decides what happens next:

- the model is there: nothing;
- the server answers, but the model or the path is not there:
  :class:`~faust_inference.ModelNotFound`, naming the URL tried and the
  likely fix (a wrong name, an endpoint that is not the server's root ...);
  waiting cannot help, so the worker stops once with that message;
- the server is not reachable (:class:`~faust_inference.TransportError`) or
  not ready yet (:class:`~faust_inference.EndpointNotReady`: loading, 5xx):
  worth waiting for, within a bound;
- the credentials are refused: :class:`~faust_inference.ConfigurationError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

from faust_inference.exceptions import ConfigurationError, EndpointNotReady, ModelNotFound
from faust_inference.providers.endpoint import Endpoint
from faust_inference.providers.redaction import excerpt, redact_url
from faust_inference.providers.transport import Response

__all__ = ["check_listed", "check_ready", "ready_on_any"]

_MISSING_WORDS = ("not found", "unknown model", "does not exist", "no model")


async def check_ready(endpoint: Endpoint, url: str, *, model: str, fixes: str) -> None:
    """``GET url`` must answer 2xx: a model-readiness route (Open Inference Protocol).

    Args:
        endpoint: the model's endpoint (credentials, transport).
        url: the readiness URL.
        model: the model's name on the server, for messages.
        fixes: what to check when the model is missing, for the message.

    Raises:
        ModelNotFound, EndpointNotReady, TransportError, ConfigurationError:
            see the module docstring.
    """
    response = await endpoint.request("GET", url)
    if response.status < 300:
        return
    said = excerpt(response.body, endpoint.secrets(), limit=200)
    missing = response.status in (404, 405) or (
        response.status == 400 and any(w in said.lower() for w in _MISSING_WORDS)
    )
    _raise_for(response, endpoint, url, model, fixes, missing, said)


async def check_listed(endpoint: Endpoint, url: str, *, model: str, fixes: str) -> None:
    """``GET url`` must list ``model`` when it lists any (OpenAI-compatible ``/models``).

    A server that lists no models (some serve whatever they are asked for)
    passes; one that lists others fails, naming a few it has.

    Raises:
        ModelNotFound, EndpointNotReady, TransportError, ConfigurationError:
            see the module docstring.
    """
    response = await endpoint.request("GET", url)
    if response.status >= 300:
        said = excerpt(response.body, endpoint.secrets(), limit=200)
        _raise_for(response, endpoint, url, model, fixes, response.status in (404, 405), said)
    where = redact_url(url)
    try:
        answer: Any = endpoint.decode(response.body, response.headers)
        items = answer["data"]
        ids = [str(item["id"]) for item in items]
    except Exception:
        raise ModelNotFound(
            f"model {model!r}: GET {where} did not answer with a model list "
            f"({excerpt(response.body, endpoint.secrets(), limit=120)!r}): {fixes}"
        ) from None
    if ids and model not in ids:
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        raise ModelNotFound(
            f"model {model!r}: GET {where} lists {shown}, not {model!r}: "
            f"set remote_name= to one of them ({fixes})"
        )


def _raise_for(
    response: Response,
    endpoint: Endpoint,
    url: str,
    model: str,
    fixes: str,
    missing: bool,
    said: str,
) -> None:
    where = f"GET {redact_url(url)} answered {response.status}"
    if response.status in (401, 403):
        raise ConfigurationError(
            f"model {model!r}: {where}: the server refused the credentials ({said}); "
            "check api_key= / api_key_env= or the model's connection"
        )
    if missing:
        raise ModelNotFound(f"model {model!r}: {where} ({said}): {fixes}")
    if response.status in (400, 408, 409, 425, 429) or response.status >= 500:
        raise EndpointNotReady(f"model {model!r}: {where}; not ready yet ({said})")
    raise ModelNotFound(f"model {model!r}: {where} ({said}): {fixes}")


async def ready_on_any(checks: Iterable[Awaitable[None]]) -> None:
    """Run one readiness check per replica: one that is ready is enough.

    A replica that is down or still loading is the pool's business (it is
    ejected and probed back); a model missing on any replica is a
    configuration error all the same, so it stops the worker with its message.

    Raises:
        ModelNotFound: some replica answers without the model.
        EndpointNotReady, TransportError, ConfigurationError: every replica
            failed; the first replica's error.
    """
    results = await asyncio.gather(*checks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    missing = [e for e in errors if isinstance(e, ModelNotFound)]
    if missing or (errors and len(errors) == len(results)):
        raise (missing or errors)[0]
