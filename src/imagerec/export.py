"""Exporting a trained model for deployment, and proving each export computes what the Keras model computes.

Formats (all take raw 0-255 RGB pixels, float32 (N, H, W, 3), and return class probabilities):
  keras       Keras 3 native file (`model.save`)
  h5          legacy HDF5 file (`model.save`), the tutorial's format
  savedmodel  TF SavedModel (`model.export(format="tf_saved_model")`) in a numbered version folder,
              NAME/1/, as TensorFlow Serving expects
  tflite      LiteRT flatbuffer (`model.export(format="litert")`); `quantize="int8"` gives a fully
              integer-quantised model calibrated on sample images (float input and output kept)
  onnx        ONNX (`model.export(format="onnx")`, tf2onnx); `quantize="int8"`: onnxruntime's static
              quantiser (QDQ, per-channel int8 weights and int8 activations), calibrated the same way

Each export folder also gets a model.json with the class names (one model per folder). Every export is
written under a temporary name, run with its own runtime (Keras in safe mode,
`tf.saved_model.load`, the LiteRT interpreter from `ai_edge_litert`, onnxruntime) on sample images, compared
with the Keras model, and only then moved into place and recorded in the folder's SHA-256 manifest. A float
export that disagrees by more than FLOAT_TOLERANCE is refused; an int8 export reports its accuracy drop.
"""

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from imagerec import fileio, manifest, rundir, saving
from imagerec.errors import UserError

FORMATS = ("keras", "h5", "savedmodel", "tflite", "onnx")
SUFFIXES = {"keras": ".keras", "h5": ".h5", "tflite": ".tflite", "onnx": ".onnx"}
QUANTIZABLE = {"int8": ("tflite", "onnx")}
FLOAT_TOLERANCE = 1e-4  # max |probability difference| a float export may show against Keras
# The runtime each format is checked with, and the pip extra that brings it.
RUNTIMES = {"tflite": ("ai_edge_litert", "export"), "onnx": ("onnxruntime", "export")}
CONVERTERS = {"onnx": ("tf2onnx", "export")}
INT8_NEEDS = {"onnx": ("sympy", "export")}  # onnxruntime's quantisation pre-processing infers shapes with sympy


@dataclasses.dataclass
class ExportResult:
    """Where an export went and how closely its own runtime reproduced the Keras model."""

    path: Path
    format: str
    quantize: str | None
    size_bytes: int
    images: int  # images the check ran on
    top1_agreement: float  # fraction of images whose top label matches Keras'
    max_abs_difference: float  # largest |probability difference| over all images and classes
    accuracy_keras: float | None = None  # on the check images, when their labels were given
    accuracy_export: float | None = None

    @property
    def accuracy_drop(self):
        if self.accuracy_keras is None:
            return None
        return self.accuracy_keras - self.accuracy_export

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "path": str(self.path), "accuracy_drop": self.accuracy_drop}


def default_path(format_name: str, quantize=None) -> Path:
    """exports/model.<suffix> (exports/model_int8.tflite when quantised); a SavedModel goes in exports/model/."""
    stem = "model" if not quantize else f"model_{quantize}"
    return Path("exports") / (stem + SUFFIXES.get(format_name, ""))


def export_model(classifier, out, format_name: str, dataset, *, quantize: str | None = None,
                 check_images: int = 256, calibration_images: int = 256, seed: int = 0,
                 version: int | None = None) -> ExportResult:
    """Write `classifier` (a Keras-backed Classifier) to `out` in `format_name`, check it, and record it.

    The export's probabilities on `check_images` test images of `dataset` (a data.Dataset, drawn with `seed`)
    are compared with Keras'; an int8 model is calibrated on `calibration_images` of its training images.
    For "savedmodel", `out` is the model's folder and the export goes in `out/<version>/` (default: one above
    the highest version there). Raises UserError for a bad request or an export that disagrees.
    """
    check_counts(check_images, calibration_images, version)
    generator = np.random.default_rng(seed)
    check = generator.choice(len(dataset.y_test), min(check_images, len(dataset.y_test)), replace=False)
    calibration = generator.choice(len(dataset.y_train), min(calibration_images, len(dataset.y_train)),
                                   replace=False)
    return export_arrays(classifier, out, format_name, dataset.x_test[check], dataset.y_test[check],
                         quantize=quantize, calibration_images=dataset.x_train[calibration], version=version)


def export_arrays(classifier, out, format_name: str, check_images: np.ndarray, check_labels=None,
                  quantize: str | None = None, calibration_images=None, version: int | None = None) -> ExportResult:
    """`export_model` on given uint8 images (N, H, W, 3): `check_labels` (N,) add accuracies;
    `calibration_images` are needed for int8."""
    _check_request(classifier, format_name, quantize, check_images, calibration_images)
    target = _target_path(Path(out), format_name, version)
    _check_folder_holds_this_model(classifier, target.parent)
    reference = classifier.predict_proba(check_images)
    with fileio.atomic_path(target, suffix=SUFFIXES.get(format_name, "")) as temporary:
        _write(classifier.keras_model, temporary, format_name, quantize, calibration_images)
        probabilities = run_export(temporary, format_name, check_images)
        result = _compare(target, format_name, quantize, reference, probabilities, check_labels)
        result.size_bytes = sum(file.stat().st_size for file in manifest.artefact_files(temporary))
        if not quantize and result.max_abs_difference > FLOAT_TOLERANCE:
            raise UserError(f"the {format_name} export disagrees with the Keras model: max |probability "
                            f"difference| {result.max_abs_difference:.2e} > {FLOAT_TOLERANCE:.0e}; nothing written")
    info_path = _write_model_info(classifier, target)
    manifest.record(target.parent, [target, info_path])
    return result


def _check_folder_holds_this_model(classifier, folder: Path) -> None:
    """An export folder's model.json names one model's classes: refuse to mix in a model with other classes."""
    existing = rundir.folder_model_info(folder)
    if existing is not None and existing.class_names != tuple(classifier.class_names):
        raise UserError(f"{folder / rundir.MODEL_INFO_FILE} describes a model with other classes; export into "
                        f"a folder of its own")


def _write_model_info(classifier, target: Path) -> Path:
    """model.json beside the export (above a SavedModel's version folders), so loaders find the class names.

    One already there (a run directory's own, or an earlier export of this model) is kept as it is.
    """
    if rundir.folder_model_info(target.parent) is not None:
        return target.parent / rundir.MODEL_INFO_FILE
    return rundir.write_model_info(target.parent, rundir.ModelInfo(
        tuple(classifier.class_names), tuple(classifier.input_shape), exported_from=str(classifier.path)))


def _check_request(classifier, format_name, quantize, check_images, calibration_images) -> None:
    if format_name not in FORMATS:
        raise UserError(f"unknown export format {format_name!r}; choose one of {', '.join(FORMATS)}")
    if quantize is not None and format_name not in QUANTIZABLE.get(quantize, ()):
        raise UserError(f"`quantize` {quantize} is supported for: "
                        f"{', '.join(QUANTIZABLE.get(quantize, ())) or 'none'} (not {format_name})")
    if classifier.keras_model is None:
        raise UserError(f"{classifier.path} is a {classifier.format}; export from the run directory or its "
                        f".keras/.h5 file instead")
    for needed in (RUNTIMES.get(format_name), CONVERTERS.get(format_name),
                   INT8_NEEDS.get(format_name) if quantize == "int8" else None):
        if needed is not None:
            require(*needed)
    if len(check_images) == 0:
        raise UserError("no images to check the export with")
    if quantize and (calibration_images is None or len(calibration_images) == 0):
        raise UserError("an int8 export needs calibration images")


def require(module: str, extra: str) -> None:
    """Import `module` or raise a UserError naming the pip extra that installs it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(f"this needs the {module} package: pip install 'imagerec[{extra}]'") from None


def check_counts(check_images: int, calibration_images: int, version: int | None = None) -> None:
    """UserError unless the image counts are 1 or more and a SavedModel version is a positive whole number (TF
    Serving's version folders)."""
    for name, value in (("check_images", check_images), ("calibration_images", calibration_images),
                        ("version", 1 if version is None else version)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"`{name}` must be a whole number, 1 or more, got {value!r}")


def _target_path(out: Path, format_name: str, version) -> Path:
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"cannot write {out}: {parent} is a file, not a folder")
    if format_name == "savedmodel":
        if out.exists() and not out.is_dir():
            raise UserError(f"`out` {out} is a file; a SavedModel export needs a folder (versions go inside it)")
        versions = [int(child.name) for child in out.iterdir() if child.name.isdigit()] if out.is_dir() else []
        if version is not None and version in versions:
            raise UserError(f"{out / str(version)} already exists; TF Serving versions are never overwritten")
        return out / str(version if version is not None else max(versions, default=0) + 1)
    if out.suffix.lower() != SUFFIXES[format_name]:
        raise UserError(f"the {format_name} export must end in {SUFFIXES[format_name]}: got {out}")
    if out.is_dir():
        raise UserError(f"`out` {out} is a folder; give a file name ending in {SUFFIXES[format_name]}")
    return out


def _write(model, path: Path, format_name: str, quantize, calibration_images) -> None:
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


# ---------------------------------------------------------------- running an export with its own runtime

def run_export(path, format_name: str, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities (N, K) float32 of the exported model at `path`, computed by that format's runtime."""
    predict = {"keras": _keras_runner, "h5": _keras_runner, "savedmodel": _saved_model_runner,
               "tflite": _litert_runner, "onnx": _onnx_runner}[format_name](Path(path))
    images = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(predict(images[start:start + batch_size]), np.float32)
                           for start in range(0, len(images), batch_size)])


def _keras_runner(path: Path):
    import keras

    from imagerec import layers  # noqa: F401 - registers imagerec's own layers, which saved models name

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    return lambda batch: model(batch, training=False)


def _saved_model_runner(path: Path):
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    (input_name, _), = signature.structured_input_signature[1].items()
    output_name = sorted(signature.structured_outputs)[0]
    return lambda batch: signature(**{input_name: tf.constant(batch)})[output_name]


def _litert_runner(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def predict(batch):
        interpreter.resize_tensor_input(input_index, batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    return predict


def _onnx_runner(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]


def _compare(target, format_name, quantize, reference, probabilities, labels) -> ExportResult:
    result = ExportResult(path=target, format=format_name, quantize=quantize, size_bytes=0, images=len(reference),
                          top1_agreement=float((reference.argmax(1) == probabilities.argmax(1)).mean()),
                          max_abs_difference=float(np.abs(reference - probabilities).max()))
    if labels is not None:
        labels = np.asarray(labels)
        result.accuracy_keras = float((reference.argmax(1) == labels).mean())
        result.accuracy_export = float((probabilities.argmax(1) == labels).mean())
    return result


def describe(result: ExportResult) -> str:
    """One line for the CLI: where, how big, and how the check came out."""
    line = (f"{result.path} ({result.format}{', ' + result.quantize if result.quantize else ''}, "
            f"{result.size_bytes / 1e6:.2f} MB): on {result.images} images top-1 agreement with Keras "
            f"{100 * result.top1_agreement:.2f}%, max |probability difference| {result.max_abs_difference:.2e}")
    if result.accuracy_drop is not None:
        line += (f"; accuracy {100 * result.accuracy_export:.2f}% vs Keras {100 * result.accuracy_keras:.2f}% "
                 f"(drop {100 * result.accuracy_drop:+.2f} points)")
    return line

