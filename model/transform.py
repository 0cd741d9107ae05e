"""TensorFlow Transform user module: pixel bytes -> normalised [48, 48, 1] float image.

Transform's graph is stored with every model (``tft_layer``), so training and both
serving signatures apply exactly the same normalisation.
"""

from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft

from fer_data import features


def pixels_to_image(pixels: tf.Tensor) -> tf.Tensor:
    """`pixels` values ([batch] or [batch, 1] strings of 2304 bytes) -> float32
    [batch, 48, 48, 1] (no normalisation); a value of another length fails clearly."""
    check = tf.debugging.assert_equal(
        tf.strings.length(pixels),
        features.NUM_PIXELS,
        message=f"every `{features.PIXELS_KEY}` value must hold {features.NUM_PIXELS} bytes",
    )
    with tf.control_dependencies([check]):
        values = tf.io.decode_raw(pixels, tf.uint8)
    return tf.reshape(tf.cast(values, tf.float32), (-1,) + features.IMAGE_SHAPE)


def preprocessing_fn(inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """tf.Transform callback: z-score the pixels over the whole training set.

    The mean and variance are full-pass analyzers (``tft.scale_to_z_score`` over all
    pixel values of the train split, one scalar each); the label passes unchanged.
    """
    image = pixels_to_image(inputs[features.PIXELS_KEY])
    outputs = {features.IMAGE_XF_KEY: tft.scale_to_z_score(image, elementwise=False)}
    if features.LABEL_KEY in inputs:  # absent at serving time
        outputs[features.LABEL_XF_KEY] = inputs[features.LABEL_KEY]
    return outputs
