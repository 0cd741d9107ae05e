"""TFX components and user modules of the FER2013 pipeline.

Keras choice (made once for the whole project): TF 2.16 ships Keras 3 as ``tf.keras``;
the TFX 1.16 / TFT / TFMA path (``tft_layer`` -> SavedModel with signatures -> TFMA ->
TF Serving) is proven on the legacy ``tf_keras`` package, so every module uses it.
The variable is set before TensorFlow is imported anywhere in our code.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
