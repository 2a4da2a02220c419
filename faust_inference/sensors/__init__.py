"""Observers of the inference core: what it reports, turned into metrics.

The core calls typed no-op hooks (:class:`~faust_inference.core.hooks.InferenceHooks`);
the observers here implement them. :mod:`faust_inference.sensors.prometheus`
exports Prometheus metrics on the Faust web server's ``/metrics``
(``pip install 'faust-inference[prometheus]'``)::

    from faust_inference.sensors import prometheus
    prometheus.setup(app, prices={"gpt": Price(input_per_million=0.15)})
"""
