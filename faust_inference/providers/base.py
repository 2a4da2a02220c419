"""Old home of the provider lookup, kept only so ``app.py``'s import works.

The lookup lives in :mod:`faust_inference.providers.registry`; the plugin
API is :mod:`faust_inference.providers`. Import from there: this module goes
away once ``app.py`` does.
"""

from faust_inference.providers.registry import create_provider

__all__ = ["create_provider"]
