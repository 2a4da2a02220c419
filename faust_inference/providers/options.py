"""A provider's own options: validated at registration, unknown names listed with the fix.

Keyword arguments of ``app.model(...)`` that are not
:class:`~faust_inference.ModelSettings` fields reach the provider as
``settings.options``; :func:`parse_options` checks them against the
provider's :class:`ProviderOptions` subclass.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from faust_inference.config import ModelSettings
from faust_inference.exceptions import ConfigurationError, InferenceError, ResponseDecodeError

__all__ = ["ProviderOptions", "parse_answer", "parse_options"]

OptionsT = TypeVar("OptionsT", bound="ProviderOptions")

# What a user may pass to app.model() besides the provider's options.
_CORE_SETTINGS = sorted(set(ModelSettings.model_fields) - {"name", "options"})


class ProviderOptions(BaseModel):
    """Base of every provider's options: frozen, and unknown names are errors.

    Example:
        >>> class EchoOptions(ProviderOptions):
        ...     suffix: str = "!"
        >>> EchoOptions(suffix="?").suffix
        '?'
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )


def parse_options(settings: ModelSettings, options_type: type[OptionsT]) -> OptionsT:
    """Validate a model's provider options, naming the bad one and what is accepted.

    An unknown name is answered with the provider's options, the model
    settings every provider takes (a typo in ``max_concurency`` lands here),
    and the closest match.

    Example:
        >>> class EchoOptions(ProviderOptions):
        ...     suffix: str = "!"
        >>> s = ModelSettings(name="m", provider="echo", options={"max_concurency": 4})
        >>> parse_options(s, EchoOptions)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        faust_inference.exceptions.ConfigurationError: model 'm' (provider 'echo'): ...

    Raises:
        ConfigurationError: an unknown or invalid option.
    """
    try:
        return options_type.model_validate(settings.options)
    except ValidationError as exc:
        own = sorted(options_type.model_fields)
        problems = []
        hints: list[str] = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "options"
            problems.append(f"{where}: {err['msg']}")
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(where, [*own, *_CORE_SETTINGS], n=1)
                if close:
                    hints.append(f"did you mean {close[0]!r}?")
        raise ConfigurationError(
            f"model {settings.name!r} (provider {settings.provider!r}): "
            f"{'; '.join(problems)}. {' '.join(hints) + ' ' if hints else ''}"
            f"Options this provider accepts: {', '.join(own) or 'none'}; "
            f"settings every model accepts: {', '.join(_CORE_SETTINGS)}"
        ) from None


def parse_answer(
    parser: Callable[[Any, int], Sequence[Any]], answer: Any, n: int, url: str
) -> list[Any]:
    """Run a user's ``response_parser``; its failure is a malformed answer, not a crash.

    Example:
        >>> parse_answer(lambda body, n: body["out"], {"out": [1, 2]}, 2, "http://h/p")
        [1, 2]

    Raises:
        ResponseDecodeError: the parser raised, or returned other than ``n`` outputs.
    """
    try:
        outputs = list(parser(answer, n))
    except InferenceError:
        raise
    except Exception as exc:
        raise ResponseDecodeError(
            f"{url}: response_parser failed: {type(exc).__name__}: {exc}"
        ) from exc
    if len(outputs) != n:
        raise ResponseDecodeError(f"{url}: {len(outputs)} outputs for {n} inputs")
    return outputs
