"""What runs inside Transform and the Trainers, and what is served.

The TFX user modules (``model.transform.preprocessing_fn``, ``model.trainer.run_fn``),
the Trainer's settings (``model.trainer_config``), the model zoo and its training recipes
(``model.zoo``), the serving signatures with their image guard, and the facts saved with
every model (``model.model_metadata``). It builds on the data contract (fer_data) only;
the custom TFX components (components) and the pipeline build on it.

Keras choice (made once for the whole project): TF 2.16 ships Keras 3 as ``tf.keras``;
the TFX 1.16 / TFT / TFMA path (``tft_layer`` -> SavedModel with signatures -> TFMA ->
TF Serving) is proven on the legacy ``tf_keras`` package, so every module uses it.
The variable is set before TensorFlow is imported anywhere in our code.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
