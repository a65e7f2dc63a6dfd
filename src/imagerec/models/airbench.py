"""The airbench family (arXiv 2404.00498) at any input size: raw pixels → frozen patch whitening → three conv
blocks → logits. Three widths are registered, each with airbench's GELU (`airbench`, `airbench_medium`,
`airbench_small`) and with SiLU (`*_silu`: cheaper on a CPU, what the default recipes train); `init_airbench_net`
sets the whitening from data. The activation is in the name, because loading rebuilds a net by its name."""

import functools

import keras
import numpy as np

from imagerec.models import layers as custom_layers
from imagerec.models.layers import replica_synced_batch_norm
from imagerec.models.registry import INPUT_NAME, register_model

WHITENING_LAYER = "whiten"  # the PatchWhitening layer's name: the trainer sets it from data, the optimiser freezes it


def airbench_net(input_shape, num_classes: int, widths=(64, 256, 256), name: str = "airbench",
                 activation="gelu") -> keras.Model:
    """An airbench94-shaped net (arXiv 2404.00498) returning logits: raw pixels → normalising, frozen 2x2
    patch whitening (24 filters) → GELU → 3 blocks [conv3x3 → maxpool2 → BN → GELU → conv3x3 → BN → GELU]
    → maxpool → linear without bias → x 1/9 (`activation` replaces GELU everywhere). Convolutions have no bias
    and start as partial identities; BN keeps its scale at 1 (only its bias trains), eps 1e-12, fast running statistics.

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
                                     stride=stride, name=WHITENING_LAYER, dtype="float32")(inputs)
    x = keras.layers.Activation(activation)(x)
    for index in range(pools):
        x = keras.layers.MaxPooling2D(2, name=f"stem_pool{index + 1}")(x)
    for index, width in enumerate(widths, start=1):
        x = _airbench_block(x, width, f"block{index}", activation)
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


def _airbench_block(x, width: int, name: str, activation="gelu"):
    def batch_norm(suffix):
        # Keras momentum 0.6 = PyTorch momentum 0.4: running stats follow the batches quickly (airbench).
        return replica_synced_batch_norm(momentum=0.6, epsilon=1e-12, scale=False, name=f"{name}_bn{suffix}")

    def conv(suffix):
        return keras.layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=_torch_default_init(),
                                   name=f"{name}_conv{suffix}")

    x = keras.layers.MaxPooling2D(2)(conv(1)(x))
    x = keras.layers.Activation(activation)(batch_norm(1)(x))
    x = conv(2)(x)
    return keras.layers.Activation(activation)(batch_norm(2)(x))


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
    whiten = net.get_layer(WHITENING_LAYER)
    kernel, offset = custom_layers.whitening_parameters(images, whiten.patch_size, stride=whiten.stride)
    whiten.kernel.assign(kernel)
    whiten.offset.assign(offset)


def _register_airbench(name: str, widths, doc: str, activation: str = "gelu"):
    builder = functools.partial(airbench_net, widths=widths, name=name, activation=activation)
    builder.__name__, builder.__doc__ = name, doc
    register_model("airbench", "logits", description="airbench net")(builder)


_register_airbench("airbench", (64, 256, 256), "airbench94 widths: 64/256/256, 236 MFLOP per image forward.")
_register_airbench("airbench_medium", (64, 128, 128), "Half-width blocks 2-3: 64/128/128.")
_register_airbench("airbench_small", (32, 64, 64), "Quarter width: 32/64/64.")
_register_airbench("airbench_silu", (64, 256, 256), "airbench94 widths with SiLU for GELU.", "silu")
_register_airbench("airbench_medium_silu", (64, 128, 128), "Half-width blocks 2-3 with SiLU for GELU.", "silu")
_register_airbench("airbench_small_silu", (32, 64, 64), "Quarter width with SiLU for GELU.", "silu")
