"""Optional cloud SDKs: imported when a model needs one, or an error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from faust_inference.exceptions import ConfigurationError

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional SDK, or say which extra installs it.

    Example:
        >>> require("json", "aws", "the bedrock provider").__name__
        'json'

    Raises:
        ConfigurationError: the module is not installed; names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ConfigurationError(
            f"{what} needs {package}, which is not installed: "
            f"pip install 'faust-inference[{extra}]'"
        ) from None
