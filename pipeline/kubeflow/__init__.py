"""Kubeflow Pipelines (v2): compile the pipeline into a package, submit it, the command
every step runs in its pod, and a local emulation of the open-source backend that runs a
compiled package on this machine (``fer-pipeline run-package``)."""
