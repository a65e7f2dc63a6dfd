"""The model a run saves and serves (raw pixels → probabilities, optional test-time views), and its size:
parameters and forward FLOPs per image."""

import keras

from imagerec.models import layers as custom_layers
from imagerec.models.registry import INPUT_NAME


def outputs_probabilities(model: keras.Model) -> bool:
    """True when the model ends in a softmax (seed, tiny), False when it returns logits (airbench nets)."""
    activation = getattr(model.layers[-1], "activation", None)
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def inference_model(net: keras.Model, test_time_augmentation: bool = False,
                    temperature: float | None = None) -> keras.Model:
    """The model to save and serve: raw pixels → class probabilities.

    A net that returns logits gets a softmax (and optionally the 6-view test-time augmentation,
    weighted as airbench's tta_level 2) around it; a net that already ends in softmax is returned as is.
    `temperature` (fitted by `training.calibration`) divides the logits before the softmax, so every format
    written from this model gives calibrated probabilities.
    """
    if outputs_probabilities(net):
        if temperature is None:
            return net
        inputs = keras.Input(shape=net.input_shape[1:], name=INPUT_NAME)
        scores = custom_layers.Temperature(temperature, from_probabilities=True, name="temperature")(net(inputs))
        outputs = keras.layers.Softmax(name="probabilities", dtype="float32")(scores)
        return keras.Model(inputs, outputs, name=f"{net.name}_calibrated")
    inputs = keras.Input(shape=net.input_shape[1:], name=INPUT_NAME)
    if test_time_augmentation:
        logits = custom_layers.TestTimeAverage()(net(custom_layers.TestTimeViews()(inputs)))
    else:
        logits = net(inputs)
    if temperature is not None:
        logits = custom_layers.Temperature(temperature, name="temperature")(logits)
    outputs = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name=f"{net.name}_inference")


def single_view_model(model: keras.Model) -> keras.Model | None:
    """An inference model's twin without its test-time views (the same net, temperature and softmax, one view per
    image), or None when it has no views."""
    if not any(isinstance(layer, custom_layers.TestTimeViews) for layer in model.layers):
        return None
    return inference_model(net_of(model), test_time_augmentation=False, temperature=temperature_of(model))


def temperature_of(model: keras.Model) -> float | None:
    """The temperature a saved model divides its logits by, or None (a model from before calibration)."""
    found = [layer.temperature for layer in model.layers if isinstance(layer, custom_layers.Temperature)]
    return found[0] if found else None


def net_of(model: keras.Model) -> keras.Model:
    """The trained net inside an inference model (behind test-time views, a temperature, a softmax), or the
    model itself when it is the net (a seed model saved as trained)."""
    if not isinstance(model.layers[-1], keras.layers.Softmax):  # a net ends in its own Dense layer
        return model
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def count_params(model: keras.Model) -> int:
    return int(model.count_params())


def forward_flops(model: keras.Model) -> int:
    """Floating-point operations of one image's forward pass (2 per multiply-add of conv and dense layers).

    Counted from layer shapes by hand: TensorFlow's profiler needs a frozen v1 graph and Keras has no
    FLOP counter. Normalisation, activations and pooling (well under 1% here) are left out.
    Training costs about 3x this per image (forward + two backward products). A nested net behind
    test-time views counts once per view.
    """
    views = len(custom_layers.TestTimeViews.VIEW_WEIGHTS) if any(
        isinstance(layer, custom_layers.TestTimeViews) for layer in model.layers) else 1
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            flops += views * forward_flops(layer)
        # A depthwise kernel (kh, kw, in, multiplier) gives in * multiplier outputs: the same product.
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, custom_layers.PatchWhitening)):
            kernel_height, kernel_width, channels_in, channels_out = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            flops += 2 * height * width * channels_out * kernel_height * kernel_width * channels_in
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return int(flops)

