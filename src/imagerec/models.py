"""Models, registered by name: pure Keras Functional builders with no I/O.

Every model takes raw 0-255 RGB pixels (any numeric dtype) and rescales inside itself, so each saved
format (Keras, HDF5, SavedModel, and later TFLite/ONNX) takes the same input: no train/serve skew.
"""

import functools

import keras
import numpy as np

from imagerec import layers as custom_layers

MODELS = {}
# Earlier names of the airbench nets; model.json files of older runs still name them.
ALIASES = {"fast": "airbench", "fast_medium": "airbench_medium", "fast_small": "airbench_small"}
INPUT_NAME = "image"  # the SavedModel signature's input key


def register_model(builder):
    """Decorator: make `builder(input_shape, num_classes)` available as `build_model(builder.__name__)`."""
    MODELS[builder.__name__] = builder
    return builder


def check_model_name(name: str) -> None:
    """UserError unless `name` is a registered model."""
    from imagerec.errors import UserError

    if ALIASES.get(name, name) not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")


def build_model(name: str, num_classes: int, input_shape=(32, 32, 3)) -> keras.Model:
    check_input_shape(name, input_shape)
    return MODELS[ALIASES.get(name, name)](tuple(input_shape), int(num_classes))


# Models that take one input size only (the tutorial's seed net: its dense layer is sized for 32x32 inputs).
FIXED_INPUT_SHAPES = {"seed": (32, 32, 3)}


def check_input_shape(name: str, input_shape) -> None:
    """UserError unless model `name` is registered and takes images of `input_shape` (H, W, 3)."""
    from imagerec.errors import UserError

    check_model_name(name)
    name = ALIASES.get(name, name)
    if name in BACKBONES and min(input_shape[:2]) < BACKBONE_MIN_SIDE:
        raise UserError(f"the {name} backbone takes images of {BACKBONE_MIN_SIDE}x{BACKBONE_MIN_SIDE} or more, got "
                        f"{input_shape[0]}x{input_shape[1]}")
    if name in FIXED_INPUT_SHAPES and tuple(input_shape) != FIXED_INPUT_SHAPES[name]:
        height, width = FIXED_INPUT_SHAPES[name][:2]
        raise UserError(f"the {name} model is the tutorial's {height}x{width} CNN and takes {height}x{width} images "
                        f"only, got {input_shape[0]}x{input_shape[1]}: use `image_size` {height}, or an airbench "
                        f"recipe, which takes any size")


def replica_synced_batch_norm(**kwargs) -> keras.layers.BatchNormalization:
    """BatchNormalization that, when built under a tf.distribute strategy with several replicas, computes
    its statistics over the global batch. Unsynchronised, each replica would update the running statistics
    from its own slice and the workers' copies would drift apart (seen with MultiWorkerMirroredStrategy);
    synchronised, N replicas compute what one device computes on the whole batch."""
    from imagerec import backends

    if not backends.is_tensorflow():  # no tf.distribute: one device
        return keras.layers.BatchNormalization(**kwargs)
    import tensorflow as tf

    return keras.layers.BatchNormalization(synchronized=tf.distribute.get_strategy().num_replicas_in_sync > 1,
                                           **kwargs)


def _conv_bn(x, filters: int):
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    return replica_synced_batch_norm()(x)


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
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="seed")


@register_model
def tiny(input_shape, num_classes: int) -> keras.Model:
    """A few-thousand-parameter CNN for tests and smoke runs; same input contract as the real models."""
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = _conv_bn(x, 8)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="tiny")


# ---------------------------------------------------------------- the airbench family

def airbench_net(input_shape, num_classes: int, widths=(64, 256, 256), name: str = "airbench") -> keras.Model:
    """An airbench94-shaped net (arXiv 2404.00498) returning logits: raw pixels → normalising, frozen 2x2
    patch whitening (24 filters) → GELU → 3 blocks [conv3x3 → maxpool2 → BN → GELU → conv3x3 → BN → GELU]
    → maxpool → linear without bias → x 1/9. Convolutions have no bias and start as partial identities;
    BN keeps its scale at 1 (only its bias trains), eps 1e-12, fast running statistics.

    Any input size from 8 px: larger images are brought to a ~32 px map first (`stem_for`), by a strided
    whitening stem (which keeps every pixel: 2*p*p*3 filters for p x p patches) and max-pooling, so that the
    blocks cost about what they cost at 32 px.

    Call `init_airbench_net(net, images)` before training: it sets the normalisation and whitening from data.
    """
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    patch_size, stride, pools = stem_for(input_shape)
    # Raw pixels go straight in: the whitening folds in the input normalisation (see PatchWhitening).
    # float32 even under mixed precision: raw 0-255 pixels and the folded-in mean offset cancel (see PatchWhitening).
    x = custom_layers.PatchWhitening(2 * patch_size * patch_size * input_shape[-1], patch_size=patch_size,
                                     stride=stride, name="whiten", dtype="float32")(inputs)
    x = keras.layers.Activation("gelu")(x)
    for index in range(pools):
        x = keras.layers.MaxPooling2D(2, name=f"stem_pool{index + 1}")(x)
    for index, width in enumerate(widths, start=1):
        x = _airbench_block(x, width, f"block{index}")
    x = keras.layers.GlobalMaxPooling2D()(x)  # = airbench's MaxPool2d(3) on the final 3x3 map
    x = keras.layers.Dense(num_classes, use_bias=False, kernel_initializer=_torch_default_init(),
                           name="logits_unscaled")(x)
    outputs = keras.layers.Rescaling(1.0 / 9, name="logits", dtype="float32")(x)  # airbench: scaling_factor 1/9
    net = keras.Model(inputs, outputs, name=name)
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(_partial_identity(layer.kernel.numpy()))
    return net


def stem_for(input_shape) -> tuple:
    """(patch size, stride, max-pools) of the airbench stem for an input (H, W, C): up to 47 px, airbench's
    own 2x2 whitening at stride 1; up to 95 px, 2x2 patches at stride 2; larger, 4x4 patches at stride 4,
    then 2x2 max-pools until the shorter side is under 48 px (224 px → 56 → 28)."""
    side = min(input_shape[0], input_shape[1])
    if side < 48:
        return 2, 1, 0
    if side < 96:
        return 2, 2, 0
    pools, reduced = 0, side // 4
    while reduced >= 48:
        pools, reduced = pools + 1, reduced // 2
    return 4, 4, pools


def _torch_default_init():
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for conv and linear layers, which airbench's
    hyper-parameters were tuned with. Keras' glorot default is up to 2.4x wider here (e.g. the 256->10
    linear layer), which changes the effective learning rate of the random filters."""
    return keras.initializers.VarianceScaling(scale=1 / 3, mode="fan_in", distribution="uniform")


def _airbench_block(x, width: int, name: str):
    def batch_norm(suffix):
        # Keras momentum 0.6 = PyTorch momentum 0.4: running stats follow the batches quickly (airbench).
        return replica_synced_batch_norm(momentum=0.6, epsilon=1e-12, scale=False, name=f"{name}_bn{suffix}")

    def conv(suffix):
        return keras.layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=_torch_default_init(),
                                   name=f"{name}_conv{suffix}")

    x = keras.layers.MaxPooling2D(2)(conv(1)(x))
    x = keras.layers.Activation("gelu")(batch_norm(1)(x))
    x = conv(2)(x)
    return keras.layers.Activation("gelu")(batch_norm(2)(x))


def _partial_identity(kernel: np.ndarray) -> np.ndarray:
    """Make output filter i pass input channel i through unchanged, for i < min(in, out) (an implicit
    residual, airbench's dirac init); other filters keep their random init."""
    kernel = kernel.copy()
    size, _, channels_in, channels_out = kernel.shape
    count = min(channels_in, channels_out)
    kernel[:, :, :, :count] = 0
    kernel[size // 2, size // 2, np.arange(count), np.arange(count)] = 1
    return kernel


def init_airbench_net(net: keras.Model, images: np.ndarray) -> None:
    """Set the net's patch whitening (and input normalisation) from uint8 training images (N, H, W, 3)."""
    whiten = net.get_layer("whiten")
    kernel, offset = custom_layers.whitening_parameters(images, whiten.patch_size, stride=whiten.stride)
    whiten.kernel.assign(kernel)
    whiten.offset.assign(offset)


def _register_airbench(name: str, widths, doc: str):
    builder = functools.partial(airbench_net, widths=widths, name=name)
    builder.__name__, builder.__doc__ = name, doc
    register_model(builder)


_register_airbench("airbench", (64, 256, 256), "airbench94 widths: 64/256/256, 236 MFLOP per image forward.")
_register_airbench("airbench_medium", (64, 128, 128), "Half-width blocks 2-3: 64/128/128.")
_register_airbench("airbench_small", (32, 64, 64), "Quarter width: 32/64/64.")


# ---------------------------------------------------------------- Keras Applications backbones

# name: (the keras.applications builder, its options, the input scaling the model puts in front of it).
# MobileNetV3 and EfficientNetV2 take raw 0-255 pixels themselves (include_preprocessing); ResNet50V2 expects
# its preprocess_input's [-1, 1], here a Rescaling layer, so that every saved model takes raw pixels.
BACKBONES = {
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": True}, None),
    "efficientnet_v2_b0": ("EfficientNetV2B0", {"include_preprocessing": True}, None),
    "resnet50_v2": ("ResNet50V2", {}, (1 / 127.5, -1.0)),
}
BACKBONE_LAYER = "backbone"  # the name of the nested Keras Applications model in a backbone classifier
BACKBONE_MIN_SIDE = 32  # Keras Applications refuse smaller inputs


def build_backbone(name: str, input_shape, weights=None) -> keras.Model:
    """The Keras Applications model `name` without its top, named BACKBONE_LAYER; `weights` None or "imagenet"
    (Keras' download and cache)."""
    builder, options, _ = BACKBONES[name]
    backbone = getattr(keras.applications, builder)(input_shape=tuple(input_shape), include_top=False,
                                                    weights=weights, **options)
    backbone.name = BACKBONE_LAYER  # not the builder's `name`: EfficientNetV2 looks its block layout up by it
    return backbone


def backbone_classifier(input_shape, num_classes: int, backbone_name: str) -> keras.Model:
    """A Keras Applications backbone with a new head, as Keras' transfer-learning guide builds it: raw pixels →
    random flip and shift (training only) → [input scaling] → backbone, called in inference mode so that its
    BatchNormalization keeps its statistics even when fine-tuned → global average pool → dropout 0.2 → softmax."""
    _, _, scaling = BACKBONES[backbone_name]
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.RandomFlip("horizontal", name="augment_flip")(inputs)
    x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", name="augment_shift")(x)
    if scaling:
        x = keras.layers.Rescaling(scaling[0], offset=scaling[1], name="input_scaling")(x)
    x = build_backbone(backbone_name, input_shape)(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=backbone_name)


def _register_backbone(name: str):
    builder = functools.partial(backbone_classifier, backbone_name=name)
    builder.__name__ = name
    builder.__doc__ = f"keras.applications.{BACKBONES[name][0]} (include_top=False) with a new softmax head."
    register_model(builder)


for _name in BACKBONES:
    _register_backbone(_name)


def outputs_probabilities(model: keras.Model) -> bool:
    """True when the model ends in a softmax (seed, tiny), False when it returns logits (airbench nets)."""
    activation = getattr(model.layers[-1], "activation", None)
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def inference_model(net: keras.Model, test_time_augmentation: bool = False) -> keras.Model:
    """The model to save and serve: raw pixels → class probabilities.

    A net that returns logits gets a softmax (and optionally the 6-view test-time augmentation,
    weighted as airbench's tta_level 2) around it; a net that already ends in softmax is returned as is.
    """
    if outputs_probabilities(net):
        return net
    inputs = keras.Input(shape=net.input_shape[1:], name=INPUT_NAME)
    if test_time_augmentation:
        logits = custom_layers.TestTimeAverage()(net(custom_layers.TestTimeViews()(inputs)))
    else:
        logits = net(inputs)
    outputs = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name=f"{net.name}_inference")


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
