"""Griffe extension for the API reference: docstrings as the project writes them.

Why: the project's docstrings are Google style with an ``Example:`` section
(singular) and Sphinx cross-reference roles (``:class:`~pkg.Name```).
Griffe parses only ``Examples:`` (plural) into code, and renders ``Example:``
as an admonition whose ``>>>`` lines Markdown turns into nested quotes; the
roles would show as raw text. Before griffe parses a docstring, this renames
the section, turns each role into inline code (the last name when the
target starts with ``~``, as Sphinx does) and drops reStructuredText's ``::``
before code blocks, without touching the code.
Loaded by ``mkdocs.yml`` (mkdocstrings' ``extensions`` option).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["DocstringRewrites"]

_EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*$", re.MULTILINE)
_LITERAL_INTRO = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)  # "stream::" before a code block
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class DocstringRewrites(griffe.Extension):
    """Rewrite each docstring as objects are loaded, before griffe parses it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called by griffe for every module, class, function and attribute it loads."""
        if obj.docstring is not None:
            text = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
            text = _LITERAL_INTRO.sub(r"\1:", text)
            obj.docstring.value = _ROLE.sub(_role, text)
