"""The local TF Serving stand-in and ``fer-serve``, which runs the real TF Serving if it can.

Production serves with ``tensorflow_model_server`` (kubernetes/). The stand-in answers the
same gRPC (and REST) API for development and tests, newest version only. Clients live in
the ``client`` package, which this one uses for the TensorProto wire format only.
"""
