"""Models, registered by name: pure Keras Functional builders with no I/O.

Every model takes raw 0-255 RGB pixels (any numeric dtype) and rescales inside itself, so each saved
format (Keras, HDF5, SavedModel, and later TFLite/ONNX) takes the same input: no train/serve skew.
"""

import keras

MODELS = {}
INPUT_NAME = "image"  # the SavedModel signature's input key


def register_model(builder):
    """Decorator: make `builder(input_shape, num_classes)` available as `build_model(builder.__name__)`."""
    MODELS[builder.__name__] = builder
    return builder


def build_model(name: str, num_classes: int, input_shape=(32, 32, 3)) -> keras.Model:
    from imagerec.errors import UserError

    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name](tuple(input_shape), int(num_classes))


def _conv_bn(x, filters: int):
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    return keras.layers.BatchNormalization()(x)


@register_model
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
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="seed")


@register_model
def tiny(input_shape, num_classes: int) -> keras.Model:
    """A few-thousand-parameter CNN for tests and smoke runs; same input contract as the real models."""
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = _conv_bn(x, 8)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny")


def count_params(model: keras.Model) -> int:
    return int(model.count_params())


def forward_flops(model: keras.Model) -> int:
    """Floating-point operations of one image's forward pass (2 per multiply-add of conv and dense layers).

    Counted from layer shapes by hand: TensorFlow's profiler needs a frozen v1 graph and Keras has no
    FLOP counter. Normalisation, activations and pooling (well under 1% here) are left out.
    Training costs about 3x this per image (forward + two backward products).
    """
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel_height, kernel_width, channels_in, channels_out = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            flops += 2 * height * width * channels_out * kernel_height * kernel_width * channels_in
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return int(flops)
