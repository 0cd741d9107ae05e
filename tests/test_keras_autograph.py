"""AutoGraph skips tf_keras' internals (as TensorFlow's own rules skip ``keras``) and still
converts the project's code."""

import tf_keras
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.impl import conversion

from model import keras_autograph, zoo


def test_keras_internals_are_left_alone_and_our_code_is_converted():
    keras_autograph.skip_keras_internals()
    keras_autograph.skip_keras_internals()  # once per process, however often it is called
    rules = [str(rule) for rule in autograph_config.CONVERSION_RULES]
    assert rules.count(f"DoNotConvert rule for {keras_autograph.PACKAGE}") == 1
    assert conversion.is_allowlisted(tf_keras.layers.BatchNormalization.call)
    assert conversion.is_allowlisted(tf_keras.Model.train_step)
    assert not conversion.is_allowlisted(zoo.build_model)
