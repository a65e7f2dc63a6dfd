"""The original tutorial's CNN (`seed`) and a tiny net for tests, both ending in a softmax."""

import keras

from imagerec.models.layers import replica_synced_batch_norm
from imagerec.models.registry import INPUT_NAME, register_model


def _conv_bn(x, filters: int):
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    return replica_synced_batch_norm()(x)


# Its dense layer is sized for 32x32 inputs: the one shape it takes.
@register_model("tutorial", "probabilities", fixed_shape=(32, 32, 3), description="the tutorial's 32x32 CNN")
def seed(input_shape, num_classes: int) -> keras.Model:
    """The original tutorial CNN: 2,397,226 parameters for 10 classes at 32x32.

    [Conv 3x3 relu → BN] x2 → MaxPool, at 32, 64 and 128 filters → Flatten → Dropout 0.2 →
    Dense 1024 relu → Dropout 0.2 → Dense softmax.
    """
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for filters in (32, 64, 128):
        x = _conv_bn(x, filters)
        x = _conv_bn(x, filters)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Dense(1024, activation="relu")(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="seed")


@register_model("tutorial", "probabilities", description="a tiny test CNN")
def tiny(input_shape, num_classes: int) -> keras.Model:
    """A few-thousand-parameter CNN for tests and smoke runs; same input contract as the real models."""
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = _conv_bn(x, 8)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="tiny")

