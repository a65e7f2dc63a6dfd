"""Mixed precision: what `mixed_precision="auto"` means on this machine, what the hardware refuses, and Keras'
dtype policy while a net is built and trained (every saved format is float32 again: `float32_copy`)."""

import contextlib
import warnings

import keras

from imagerec import machine
from imagerec.errors import UserError
from imagerec.models import registry
from imagerec.training import recipes

POLICIES = {"off": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
assert set(POLICIES) == set(recipes.PRECISIONS) - {"auto"}


def resolve_precision(mixed_precision: str) -> str:
    """The precision a run uses: "auto" is bf16 on a GPU or a CPU with bfloat16 instructions, else off."""
    if mixed_precision != "auto":
        return mixed_precision
    return "bf16" if machine.accelerator() is not None or machine.cpu_has_bf16() else "off"


def check_precision(mixed_precision: str) -> None:
    """UserError for a precision the hardware cannot run; a warning where it runs but slowly."""
    has_gpu = machine.accelerator() is not None
    if mixed_precision == "fp16" and not has_gpu:
        raise UserError("`mixed_precision` fp16 needs a GPU (TensorFlow's CPU kernels emulate float16 slowly); "
                        "on a CPU use bf16")
    if mixed_precision == "bf16" and not has_gpu and not machine.cpu_has_bf16():
        warnings.warn("this CPU has no bfloat16 instructions (AVX512_BF16 or AMX): mixed_bfloat16 will run, "
                      "but slower than float32", stacklevel=3)


@contextlib.contextmanager
def dtype_policy(mixed_precision: str):
    """Keras' global dtype policy for building and training, restored afterwards."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(net, model_name: str, num_classes: int, image_shape):
    """The trained net rebuilt in float32 with the same weights, in Keras' own layers (no training kernels:
    `layers.fused_batch_norm`): every saved and exported format is float32."""
    copy = registry.build_model(model_name, num_classes, image_shape)
    copy.set_weights(net.get_weights())
    return copy
