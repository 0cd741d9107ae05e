"""The seed's "improved" CNN: 647,111 parameters."""
import tf_keras as keras

from components import features


def build(weights=None) -> keras.Model:
    """conv32, pool, conv64x2, pool, conv64x2, pool, conv128x3, pool, dropout, dense128, dense7."""
    del weights  # trained from scratch
    inputs = keras.Input(shape=features.IMAGE_SHAPE, name=features.IMAGE_XF_KEY)
    x = inputs
    for filters, convs in ((32, 1), (64, 2), (64, 2), (128, 3)):
        for _ in range(convs):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    outputs = keras.layers.Dense(features.NUM_CLASSES, activation="softmax", dtype="float32",
                                 name="probabilities")(x)
    return keras.Model(inputs, outputs, name="improved")
