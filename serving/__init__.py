"""``fer-serve`` runs TF Serving (as production does: kubernetes/) when it is installed, else
this package's local stand-in, which answers the same gRPC and REST API (newest version
only) for development and tests. Of ``client`` it uses the TensorProto codec and RequestLog."""
