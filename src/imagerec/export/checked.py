"""Checked exports: each export written, run in its own runtime (`runners`) and compared with Keras before it
is kept.

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
written (`writers`) under a temporary name, run with its own runtime (Keras in safe mode,
`tf.saved_model.load`, the LiteRT interpreter from `ai_edge_litert`, onnxruntime) on sample images, compared
with the Keras model, and only then moved into place and recorded in the folder's SHA-256 manifest. A float
export that disagrees by more than FLOAT_TOLERANCE is refused; an int8 export reports its accuracy drop.
"""

import dataclasses
from pathlib import Path

import numpy as np

from imagerec import backends, fileio
from imagerec.artefacts import layout, manifest, model_info
from imagerec.errors import UserError
from imagerec.export import runners, writers

FORMATS = layout.EXPORT_FORMATS
SUFFIXES = {name: layout.FORMATS[name].suffix for name in FORMATS if layout.FORMATS[name].suffix}
QUANTIZABLE = {"int8": ("tflite", "onnx")}
FLOAT_TOLERANCE = 1e-4  # max |probability difference| a float export may show against Keras
# The runtime each format is checked with, and the pip extra that brings it.
RUNTIMES = {"tflite": ("ai_edge_litert", "export"), "onnx": ("onnxruntime", "export")}
CONVERTERS = {"onnx": ("tf2onnx", "export")}
INT8_NEEDS = {"onnx": ("sympy", "export")}  # onnxruntime's quantisation pre-processing infers shapes with sympy
# Written by TensorFlow itself (SavedModel; the LiteRT and tf2onnx converters read one), whatever Keras runs on.
NEEDS_TENSORFLOW = ("savedmodel", "tflite", "onnx")


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
        writers.write(classifier.keras_model, temporary, format_name, quantize, calibration_images)
        probabilities = runners.run_export(temporary, format_name, check_images)
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
    existing = model_info.folder_model_info(folder)
    if existing is not None and existing.class_names != tuple(classifier.class_names):
        raise UserError(f"{folder / layout.MODEL_INFO_FILE} describes a model with other classes; export into "
                        f"a folder of its own")


def _write_model_info(classifier, target: Path) -> Path:
    """model.json beside the export (above a SavedModel's version folders), so loaders find the class names.

    One already there (a run directory's own, or an earlier export of this model) is kept as it is.
    """
    if model_info.folder_model_info(target.parent) is not None:
        return target.parent / layout.MODEL_INFO_FILE
    return model_info.write_model_info(target.parent, model_info.ModelInfo(
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
    if format_name in NEEDS_TENSORFLOW and not backends.has_tensorflow():
        raise UserError(f"the {format_name} export is written by TensorFlow, which is not installed here: pip "
                        f"install tensorflow, or export the keras or h5 format")
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

