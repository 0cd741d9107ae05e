"""Serving for the FER2013 model: a local TF Serving stand-in, a client library and CLIs.

- :mod:`serving.model_server` starts the stand-in (gRPC PredictionService/ModelService,
  optional REST gateway) over TF Serving's layout ``<model-base-path>/<version>/``.
- :mod:`serving.client` is the gRPC/REST client library (:class:`~serving.client.FerClient`).
- :mod:`serving.cli` holds the ``fer-serve`` and ``fer-client`` entry points.
- :mod:`serving.bench` is a bounded loopback load tool.

Modules import TensorFlow lazily where they can, so ``fer-serve`` can exec the real
``tensorflow_model_server`` without paying for a TensorFlow import.
"""
