# syntax=docker/dockerfile:1
# The image every step of the FER2013 pipeline runs in on Kubeflow Pipelines (v2).
#
#   docker build -t REGISTRY/fer-pipeline:TAG .
#   fer-pipeline compile --image REGISTRY/fer-pipeline:TAG ...
#
# Base image: gcr.io/tfx-oss-public/tfx:1.16.0, the image TFX ships for Kubeflow.
#  * Python 3.10 (conda, /opt/conda): requirements.lock pins, from a Python 3.10
#    environment (cp310 wheels), the runtime dependencies only (the closure of setup.py's
#    install_requires). tensorflow/tensorflow:2.16.x(-gpu) is not an option: its Python is
#    3.11.
#  * GPU-capable: built on Google's Deep Learning image tf2-gpu.2-16.py310 (CUDA and cuDNN
#    for TensorFlow 2.16), so the Trainer step can use the nvidia.com/gpu it requests.
#  * It already holds tfx 1.16.0 and its stack, so installing the lock over it mostly
#    confirms versions; the lock wins wherever the two differ.
#  * Its Beam SDK worker boot binary (/opt/apache/beam/boot) matches apache-beam 2.59.0.
# Pinned by tag; pin by digest (FROM gcr.io/tfx-oss-public/tfx:1.16.0@sha256:...) once
# you have pulled it, for byte-identical rebuilds.
FROM gcr.io/tfx-oss-public/tfx:1.16.0

LABEL org.opencontainers.image.title="fer-pipeline" \
      org.opencontainers.image.description="FER2013 TFX pipeline (Beam, TFDV, TFT, Keras, TFMA, Kubeflow, TF Serving)"

# PYTHONPATH: every step imports the project from /pipeline, whatever its working
# directory, so the code fingerprint each pod checks (pipeline/kubeflow/kfp_entrypoint.py) is
# computed over the same files, schemas/ included, as `make image` tagged.
ENV PYTHONPATH=/pipeline \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=1

# Fail early if the base ever stops being Python 3.10.
RUN python -c 'import sys; assert sys.version_info[:2] == (3, 10), sys.version'

WORKDIR /pipeline

# Dependencies first (own layer: rebuilt only when the lock changes). --no-deps: the
# lock is complete and exact, pip must not resolve anything on its own. Only the runtime
# lock: requirements-dev.lock (pytest, kubernetes-validate, ruff, mypy) is not in the image.
COPY requirements.lock ./
RUN python -m pip install --upgrade pip==24.2 \
 && python -m pip install --no-deps -r requirements.lock

# The project itself (packages fer_data, model, components, pipeline, serving, client). The
# source stays in /pipeline as well: schemas/schema.pbtxt is read from here by ImportSchemaGen.
COPY . .
RUN python -m pip install --no-deps . \
 && python -c "import tensorflow as tf, tfx, pipeline.pipeline, components.serving_push, model.trainer; \
assert tf.__version__ == '2.16.2', tf.__version__; assert tfx.__version__ == '1.16.0', tfx.__version__"

# No ENTRYPOINT. TFX's KubeflowV2DagRunner gives every step an explicit command
# (`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...`, and
# the file-based ExampleGen driver), which the KFP launcher runs; an entrypoint here
# would only get in the way of `docker run IMAGE python ...`. The base's entrypoint (the
# Beam SDK boot binary) is reset: to use this image as a Beam portable/Dataflow worker
# (sdk_container_image), run it with --entrypoint /opt/apache/beam/boot.
ENTRYPOINT []
CMD ["python"]

# Run as an unprivileged user. Pipeline steps write only to their artifact URIs (object
# store), the serving volume (its root must be writable by uid 10001: kubernetes/README.md)
# and the KFP launcher's local folders: before 2.5 the launcher creates /gcs, /minio, /s3
# and /tmp/kfp_outputs inside the image (backend/src/v2/component/launcher_v2.go,
# prepareOutputFolders), so they exist here and belong to that user. HOME holds caches.
RUN useradd --uid 10001 --create-home --home-dir /home/fer --shell /usr/sbin/nologin fer \
 && mkdir -p /gcs /minio /s3 /tmp/kfp_outputs \
 && chown 10001:10001 /gcs /minio /s3 /tmp/kfp_outputs
ENV HOME=/home/fer
USER 10001
