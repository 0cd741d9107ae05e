"""AutoGraph leaves Keras' own code alone, as TensorFlow intends it to.

TensorFlow's AutoGraph rules (tensorflow/python/autograph/core/config.py,
``DoNotConvert('keras')``) exempt Keras from conversion: its layers are written for graph
mode. The legacy Keras this project uses (the ``tf_keras`` package, see model/__init__.py)
is that code under another name, which no rule covers, so the first ``fit`` in every
process transpiles each Keras internal it touches (layer calls, train step, optimizer,
metrics). On 2 vCPU that is ~15 s of a small Trainer's first epoch, with bit-identical
losses without it (docs/BENCHMARKS.md, "Trainer start-up"). Our own code (the zoo) is still
converted.
"""

# No public API sets conversion rules; this is the list AutoGraph reads on every call.
from tensorflow.python.autograph.core import config as autograph_config

PACKAGE = "tf_keras"


def skip_keras_internals() -> None:
    """Adds ``DoNotConvert('tf_keras')`` to AutoGraph's rules (once per process)."""
    rule = autograph_config.DoNotConvert(PACKAGE)
    if str(rule) not in {str(existing) for existing in autograph_config.CONVERSION_RULES}:
        autograph_config.CONVERSION_RULES = (rule, *autograph_config.CONVERSION_RULES)
