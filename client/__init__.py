"""What application developers use to call the FER model behind TF Serving.

- :mod:`client.fer_client`: :class:`~client.fer_client.FerClient` (gRPC) and
  :class:`~client.fer_client.RestFerClient` (TF Serving's REST API).
- :mod:`client.cli`: the ``fer-client`` command.
- :mod:`client.bench`: a bounded loopback load tool.
- :mod:`client.tensors`, :mod:`client.input_files`: TensorProto conversions, input files.

It needs nothing of ``serving/`` (the local TF Serving stand-in): only the data contract.
"""
