"""Models: nets registered by name (pure Keras Functional builders, no I/O), rescaling inside.

    registry    names → entries (family, outputs, the sizes each takes), `build_model`; imports no Keras
    layers      imagerec's own Keras layers (registered as `imagerec>NAME`, names that saved models keep)
    tutorial    the tutorial's `seed` CNN and `tiny`      airbench   the airbench nets at any size
    backbones   Keras Applications backbones with a new head
    inference   the saved model around a net (softmax, test-time views, a temperature), parameters and FLOPs
    gradcam     Grad-CAM heatmaps of any family's net, on TensorFlow or JAX: where it looked

Every model takes raw 0-255 RGB pixels and rescales inside itself, so each saved format (Keras, HDF5,
SavedModel, TFLite, ONNX) takes the same input. The names below are importable from `imagerec.models`
itself; each loads its module on first use.
"""

from imagerec import lazy

_EXPORTS = {
    "build_model": "registry", "check_model_name": "registry", "check_input_shape": "registry",
    "register_model": "registry", "model_names": "registry", "entry": "registry", "INPUT_NAME": "registry",
    "ALIASES": "registry", "inference_model": "inference", "outputs_probabilities": "inference",
    "count_params": "inference", "forward_flops": "inference", "init_airbench_net": "airbench",
    "stem_for": "airbench", "BACKBONES": "backbones", "BACKBONE_LAYER": "backbones",
    "build_backbone": "backbones",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy.exports(__name__, _EXPORTS)
