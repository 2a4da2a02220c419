"""Model providers: one module each, behind :class:`~faust_inference.core.provider.Provider`."""
