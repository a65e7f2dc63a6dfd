"""Every file name of a run directory and of an export folder, and the one table of model formats.

A run directory holds (names kept from the original tutorial where it had them):
  run.json                       the recipe and seed, written when the run starts; `resume` checks them
  history.csv                    one row per finished epoch, streamed by Keras' CSVLogger (0-based epochs)
  backup/                        Keras' BackupAndRestore state after each epoch; deleted when the run ends
  history.json                   every epoch's record (1-based), written when the run ends
  accuracy.png, loss.png         the training curves (drawn by `evaluation.report`)
  metrics.json                   test numbers, data, recipe, model size, wall time, versions: a finished run
  model.keras                    Keras 3 native format
  imagerecognition_tf_cifar.h5   legacy HDF5 full model (the tutorial's file)
  gfgModelWeights.weights.h5     weights only (the tutorial's `gfgModelWeights`; Keras 3 needs the suffix)
  saved_model/my_model/          TF SavedModel, endpoint `serving_default`
  model.json                     the model description (`model_info.ModelInfo`), also beside every export
  manifest.json                  SHA-256 of every model file (see `manifest`)
  excluded.csv                   the files `train --exclude` left out (path, split, kind), when it was given
  report/                        report.html and its figures (see `evaluation.report`)
  tensorboard/                   TensorBoard logs, when asked for

These names are what earlier runs wrote and what later code must read (tests/test_old_runs.py holds them to
it). Other modules ask this one for paths; none spells a file name of the run directory.
"""

import dataclasses
from pathlib import Path

SETTINGS_FILE = "run.json"
HISTORY_CSV = "history.csv"
BACKUP_DIR = "backup"  # BackupAndRestore's folder: training_metadata.json (+ .bkp), latest.weights.h5
# Keras' BackupAndRestore files (double_checkpoint=True keeps each one's previous version as NAME.bkp).
BACKUP_WEIGHTS, BACKUP_METADATA, PREVIOUS = "latest.weights.h5", "training_metadata.json", ".bkp"
HISTORY_FILE = "history.json"
CURVE_FILES = {"accuracy": "accuracy.png", "loss": "loss.png"}
METRICS_FILE = "metrics.json"
MODEL_INFO_FILE = "model.json"
MANIFEST_FILE = "manifest.json"
EXCLUDED_FILE = "excluded.csv"
REPORT_DIR = "report"
TENSORBOARD_DIR = "tensorboard"


@dataclasses.dataclass(frozen=True)
class ModelFormat:
    """One format a model is written in."""

    name: str
    suffix: str  # of its file ("" for a folder)
    run_file: str | None  # its name in a run directory, or None: export only
    copy_name: str | None  # what the private copy a loader opens is called (Keras picks its loader by name)
    description: str


FORMATS = {model_format.name: model_format for model_format in (
    ModelFormat("keras", ".keras", "model.keras", "model.keras", "Keras 3 native file (`model.save`)"),
    ModelFormat("h5", ".h5", "imagerecognition_tf_cifar.h5", "model.h5", "legacy HDF5 file, the tutorial's format"),
    ModelFormat("weights", ".weights.h5", "gfgModelWeights.weights.h5", "model.weights.h5",
                "weights only (the tutorial's gfgModelWeights), rebuilt around model.json's architecture"),
    ModelFormat("savedmodel", "", "saved_model/my_model", "saved_model", "TF SavedModel, endpoint serving_default"),
    ModelFormat("tflite", ".tflite", None, None, "LiteRT flatbuffer"),
    ModelFormat("onnx", ".onnx", None, None, "ONNX"),
)}
MODEL_FILES = {name: model_format.run_file for name, model_format in FORMATS.items() if model_format.run_file}
LOADABLE_FORMATS = tuple(MODEL_FILES)  # what `load_model` opens: the run directory's formats
EXPORT_FORMATS = ("keras", "h5", "savedmodel", "tflite", "onnx")  # what `imagerec export --format` writes
KERAS_FILE, H5_FILE, WEIGHTS_FILE, SAVED_MODEL_DIR = (MODEL_FILES[name] for name in LOADABLE_FORMATS)


def excluded_csv(run_dir) -> Path:
    return Path(run_dir) / EXCLUDED_FILE


def model_path(run_dir, format_name: str = "keras") -> Path:
    return Path(run_dir) / MODEL_FILES[format_name]


def resolve_model(path) -> Path:
    """The artefact to load for `path`: a run directory's native-format model, else `path` itself."""
    path = Path(path).expanduser()
    return model_path(path) if path.is_dir() and model_path(path).is_file() else path


def format_of(path: Path) -> str | None:
    """The loadable format of the artefact at `path` ("savedmodel" for a folder with saved_model.pb), or None."""
    name = Path(path).name.lower()
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else None
    if not path.is_file():
        return None
    if name.endswith(FORMATS["weights"].suffix):
        return "weights"
    if name.endswith(FORMATS["keras"].suffix):
        return "keras"
    return "h5" if name.endswith((".h5", ".hdf5")) else None


def describing_folders(artefact) -> list:
    """The folders whose model.json and manifest.json describe `artefact`, nearest first: the folder it sits
    in, and the run directory above a run's nested SavedModel (RUN/saved_model/my_model). Never the
    artefact itself, and nothing further up (a manifest in ~/Downloads proves nothing about a file below it)."""
    artefact = Path(artefact)
    folders = [artefact.parent]
    nested = Path(SAVED_MODEL_DIR).parts
    if artefact.parts[-len(nested):] == nested:
        folders.append(artefact.parents[len(nested) - 1])
    return folders


def settings_path(run_dir) -> Path:
    return Path(run_dir) / SETTINGS_FILE


def history_csv(run_dir) -> Path:
    return Path(run_dir) / HISTORY_CSV


def history_path(run_dir) -> Path:
    return Path(run_dir) / HISTORY_FILE


def backup_dir(run_dir) -> Path:
    return Path(run_dir) / BACKUP_DIR


def curve_path(run_dir, metric: str) -> Path:
    return Path(run_dir) / CURVE_FILES[metric]


def metrics_path(run_dir) -> Path:
    return Path(run_dir) / METRICS_FILE


def report_dir(run_dir) -> Path:
    return Path(run_dir) / REPORT_DIR


def tensorboard_dir(run_dir) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR
