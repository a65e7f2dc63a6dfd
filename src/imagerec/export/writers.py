"""Writing a Keras model in each export format: Keras' own `model.save`/`model.export` where they do it, and
by hand only what they lack (int8 ONNX through onnxruntime's quantiser; tf2onnx's missing Erfc)."""

import warnings
from pathlib import Path

import numpy as np

from imagerec.artefacts import saving


def write(model, path: Path, format_name: str, quantize, calibration_images) -> None:
    """`model` written at `path` in `format_name` (int8 with `quantize`, calibrated on `calibration_images`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HDF5 is legacy", tf2onnx's numpy notes: written on purpose
        if format_name in ("keras", "h5"):
            saving.quiet_keras_logging(lambda: model.save(path))
        elif format_name == "savedmodel":
            model.export(str(path), format="tf_saved_model", verbose=False)
        elif format_name == "onnx":
            _teach_tf2onnx_erfc()
            if quantize == "int8":
                _write_onnx_int8(model, path, calibration_images)
            else:
                model.export(str(path), format="onnx", verbose=False)
        elif quantize == "int8":
            model.export(str(path), format="litert", verbose=False, **_int8_converter_settings(calibration_images))
        else:
            model.export(str(path), format="litert", verbose=False)


def _int8_converter_settings(calibration_images) -> dict:
    """TFLiteConverter settings for full-integer int8 weights and activations, float input and output."""
    import tensorflow as tf

    def representative_dataset():
        for image in calibration_images:
            yield [image[np.newaxis].astype(np.float32)]

    return {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative_dataset,
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}}


def _write_onnx_int8(model, path: Path, calibration_images, calibration_batch: int = 32) -> None:
    """Static int8 ONNX (QDQ, per-channel weights) by onnxruntime's quantiser, calibrated on sample images."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self, feeds):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as scratch:
        float_path, prepared = Path(scratch) / "float.onnx", Path(scratch) / "prepared.onnx"
        model.export(str(float_path), format="onnx", verbose=False)
        quant_pre_process(str(float_path), str(prepared))  # shape inference + graph clean-up, as ORT advises
        input_name = _onnx_input_name(prepared)
        images = np.asarray(calibration_images, np.float32)
        feeds = [{input_name: images[start:start + calibration_batch]}
                 for start in range(0, len(images), calibration_batch)]
        quantize_static(str(prepared), str(path), Batches(feeds), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)


def _onnx_input_name(path: Path) -> str:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].name


_ERFC_REGISTERED = False


def _teach_tf2onnx_erfc() -> None:
    """Give tf2onnx a conversion for TensorFlow's Erfc op, as 1 - Erf(x).

    Keras' exact GELU (the fast recipe's activation) lowers to Erfc in TensorFlow, and tf2onnx 1.17 has no
    handler for it (the export then fails to load in onnxruntime); ONNX has had Erf since opset 9. Registered
    through tf2onnx's own handler decorator, once per process.
    """
    global _ERFC_REGISTERED
    if _ERFC_REGISTERED:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:  # noqa: F841 - registered by the decorator
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            one = ctx.make_const(utils.make_name("one"), np.array(1, dtype=dtype))
            shapes, dtypes = node.output_shapes, node.output_dtypes
            ctx.remove_node(node.name)
            ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=node.output, name=node.name,
                          shapes=shapes, dtypes=dtypes)

    _ERFC_REGISTERED = True
