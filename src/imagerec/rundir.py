"""The run directory: every file name, schema and lookup of what `train` writes, in one place.

A run directory holds (names kept from the original tutorial where it had them):
  run.json                       the recipe and seed, written when the run starts; `resume` checks them
  history.csv                    one row per finished epoch, streamed by Keras' CSVLogger (0-based epochs)
  backup/                        Keras' BackupAndRestore state after each epoch; deleted when the run ends
  history.json                   every epoch's record (1-based), written when the run ends
  accuracy.png, loss.png         the training curves (drawn by `report`)
  metrics.json                   test numbers, data, recipe, model size, wall time, versions: a finished run
  model.keras                    Keras 3 native format
  imagerecognition_tf_cifar.h5   legacy HDF5 full model (the tutorial's file)
  gfgModelWeights.weights.h5     weights only (the tutorial's `gfgModelWeights`; Keras 3 needs the suffix)
  saved_model/my_model/          TF SavedModel, endpoint `serving_default`
  model.json                     the model description (`ModelInfo`), also written beside every export
  manifest.json                  SHA-256 of every model file (see `manifest`)
  report/                        report.html and its figures (see `report`)
  tensorboard/                   TensorBoard logs, when asked for

Other modules ask this one for paths and records; none spells a file name of the run directory.
"""

import csv
import dataclasses
import datetime
import json
import shutil
import sys
from pathlib import Path

from imagerec import fileio
from imagerec.errors import UserError

SETTINGS_FILE = "run.json"
HISTORY_CSV = "history.csv"
BACKUP_DIR = "backup"  # BackupAndRestore's folder: training_metadata.json (+ .bkp), latest.weights.h5
HISTORY_FILE = "history.json"
CURVE_FILES = {"accuracy": "accuracy.png", "loss": "loss.png"}
METRICS_FILE = "metrics.json"
KERAS_FILE = "model.keras"
H5_FILE = "imagerecognition_tf_cifar.h5"
WEIGHTS_FILE = "gfgModelWeights.weights.h5"
SAVED_MODEL_DIR = "saved_model/my_model"
MODEL_INFO_FILE = "model.json"
MANIFEST_FILE = "manifest.json"
REPORT_DIR = "report"
TENSORBOARD_DIR = "tensorboard"
MODEL_FILES = {"keras": KERAS_FILE, "h5": H5_FILE, "weights": WEIGHTS_FILE, "savedmodel": SAVED_MODEL_DIR}


def default_path() -> Path:
    """runs/<timestamp>, the run directory when none is given."""
    return Path("runs") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def check_new(path, create: bool = True) -> Path:
    """Check that `path` is a new or empty folder (UserError otherwise) and create it if asked."""
    path = Path(path)
    if not str(path).strip():
        raise UserError("`run_dir` is an empty name; give a folder (or None for runs/<timestamp>)")
    if path.exists() and not path.is_dir():
        raise UserError(f"`run_dir` {path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"run directory {path} already holds files; choose a new `run_dir`")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_resumable(path) -> Path:
    """The unfinished run directory at `path`; UserError when there is none to continue."""
    if path is None:
        raise UserError("`resume` needs `run_dir`: the run directory to continue")
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"cannot resume: {path} is not a run directory")
    if is_finished(path):
        raise UserError(f"cannot resume: the run in {path} has already finished")
    return path


def is_finished(run_dir) -> bool:
    return (Path(run_dir) / METRICS_FILE).is_file()


def report_dir(run_dir) -> Path:
    return Path(run_dir) / REPORT_DIR


def tensorboard_dir(run_dir) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR


def check_finished(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not is_finished(run_dir):
        raise UserError(f"{run_dir} is not a finished run directory (it has no {METRICS_FILE})")
    return run_dir


# ---------------------------------------------------------------- settings and resume state

def record_settings(run_dir, settings: dict, resume: bool) -> None:
    """Write run.json when a run starts; a resumed run must bring the same settings (UserError naming the
    ones that differ, or saying that run.json is damaged)."""
    path = Path(run_dir) / SETTINGS_FILE
    if not (resume and path.exists()):
        fileio.write_json(path, settings)
        return
    saved, given = _read_json(path), json.loads(json.dumps(settings))
    if saved is None or not isinstance(saved.get("recipe", {}), dict):
        raise UserError(f"cannot resume: {path} is damaged (not the settings imagerec wrote); start the run again "
                        f"in a new `run_dir`")
    if saved != given:
        changed = sorted(key for key in {**saved.get("recipe", {}), **given["recipe"]}
                         if saved.get("recipe", {}).get(key) != given["recipe"].get(key))
        changed += [key for key in given if key != "recipe" and saved.get(key) != given[key]]
        raise UserError(f"`resume` must repeat the run's settings; these differ from {path}: {', '.join(changed)}")


def backup_dir(run_dir) -> Path:
    return Path(run_dir) / BACKUP_DIR


# Keras' BackupAndRestore files (double_checkpoint=True keeps each one's previous version as NAME.bkp).
BACKUP_WEIGHTS, BACKUP_METADATA, PREVIOUS = "latest.weights.h5", "training_metadata.json", ".bkp"


def completed_epochs(run_dir) -> int:
    """Epochs already completed in `run_dir` (0 for a new run), from Keras' backup; history rows of later,
    unfinished epochs are dropped (the CSV row of an epoch is written before its backup, so a kill in
    between leaves an extra row, never a missing one).

    A damaged last backup (a kill while Keras wrote it, a full disk) is replaced by the previous one, as Keras
    itself would on a damaged weights file, but here before training starts, so that the history is cut at the
    epoch really resumed from; it is said in one line. UserError when neither is usable, or history.csv is
    damaged."""
    backup = backup_dir(run_dir)
    completed, problem = _backup_epoch(backup, "")
    if problem == _NO_BACKUP:  # a new run, or one stopped in its first epoch
        completed, problem = 0, None
    if problem:
        previous_problem = _backup_epoch(backup, PREVIOUS)[1]
        if previous_problem:
            raise UserError(f"cannot resume: the backup in {backup} is damaged ({problem}), and its previous copy "
                            f"too ({previous_problem}); start the run again in a new `run_dir`")
        completed = _restore_previous_backup(backup)
        print(f"imagerec: the last backup in {backup} is damaged ({problem}); resuming from the one before it "
              f"({completed} epochs done)", file=sys.stderr)
    _keep_history_rows(Path(run_dir) / HISTORY_CSV, completed)
    return completed


_NO_BACKUP = "no backup"


def _backup_epoch(backup: Path, suffix: str) -> tuple:
    """(completed epochs, None) of the backup's `suffix` version, or (0, what is wrong with it: _NO_BACKUP when
    it has neither file)."""
    weights, metadata = backup / (BACKUP_WEIGHTS + suffix), backup / (BACKUP_METADATA + suffix)
    if not weights.exists() and not metadata.exists():
        return 0, _NO_BACKUP
    content = _read_json(metadata)
    epoch = content.get("epoch") if content else None
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        return 0, f"{metadata.name} is unreadable"
    if not _readable_weights(weights):
        return 0, f"{weights.name} is unreadable"
    return epoch, None


def _readable_weights(path: Path) -> bool:
    import h5py  # Keras' weights format; deferred like Keras itself

    try:
        with h5py.File(path, "r") as weights:  # a truncated file fails here (its stored end is past the real one)
            weights.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
        return True
    except Exception:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError for damaged files
        return False


def _restore_previous_backup(backup: Path) -> int:
    for name in (BACKUP_WEIGHTS, BACKUP_METADATA):
        shutil.copyfile(backup / (name + PREVIOUS), backup / name)
    return _backup_epoch(backup, "")[0]


def _keep_history_rows(path: Path, completed: int) -> None:
    if not path.exists():
        return
    try:
        rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
        kept = [row for row in rows if int(row["epoch"]) < completed]  # CSVLogger counts epochs from 0
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error):
        raise UserError(f"cannot resume: {path} is damaged (not the history Keras' CSVLogger writes); start the run "
                        f"again in a new `run_dir`") from None
    with fileio.atomic_path(path, suffix=".csv") as temporary, \
            temporary.open("w", newline="", encoding="utf-8") as handle:
        if kept:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)


def history_csv(run_dir) -> Path:
    return Path(run_dir) / HISTORY_CSV


# ---------------------------------------------------------------- history and metrics

def read_history_csv(run_dir, phase_of) -> list:
    """Every epoch's record across resumed runs: {"epoch" (1-based), "phase": phase_of(epoch), metrics...}."""
    path = history_csv(run_dir)
    if not path.exists():
        return []
    records = []
    for row in csv.DictReader(path.open(newline="", encoding="utf-8")):
        epoch = int(row.pop("epoch")) + 1
        records.append({"epoch": epoch, "phase": phase_of(epoch),
                        **{key: float(value) for key, value in row.items() if value not in ("", "NA", None)}})
    return records


def write_history(run_dir, history: list) -> None:
    phases = {}
    for record in history:
        phases[record["phase"]] = phases.get(record["phase"], 0) + 1
    fileio.write_json(Path(run_dir) / HISTORY_FILE, {"epochs": history, "phases": phases})


def read_history(run_dir) -> list:
    """history.json's per-epoch records, or [] when the run has none."""
    return (_read_json(Path(run_dir) / HISTORY_FILE) or {}).get("epochs", [])


def curve_path(run_dir, metric: str) -> Path:
    return Path(run_dir) / CURVE_FILES[metric]


def write_metrics(run_dir, metrics: dict) -> None:
    fileio.write_json(Path(run_dir) / METRICS_FILE, metrics)


def read_metrics(run_dir) -> dict:
    """metrics.json of a finished run, or {} when there is none (or it is unreadable)."""
    return _read_json(Path(run_dir) / METRICS_FILE) or {}


def _read_json(path: Path):
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


# ---------------------------------------------------------------- models: paths, description and lookups

def model_path(run_dir, format_name: str = "keras") -> Path:
    return Path(run_dir) / MODEL_FILES[format_name]


def resolve_model(path) -> Path:
    """The artefact to load for `path`: a run directory's native-format model, else `path` itself."""
    path = Path(path).expanduser()
    return model_path(path) if path.is_dir() and model_path(path).is_file() else path


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


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """model.json: what a model file alone does not say. One schema for run directories and exports."""

    class_names: tuple
    input_shape: tuple  # (height, width, channels)
    architecture: str | None = None  # the registered model name, to rebuild weights-only files; None: unknown
    test_time_augmentation: bool = False  # the architecture wrapped in test-time views
    exported_from: str | None = None  # the model an export was written from

    def as_json(self) -> dict:
        return {"model": self.architecture, "test_time_augmentation": self.test_time_augmentation,
                "input_shape": list(self.input_shape), "class_names": list(self.class_names),
                "exported_from": self.exported_from}

    @classmethod
    def from_json(cls, content: dict):
        """A ModelInfo, or None for content that is not one: `class_names` a non-empty list, `input_shape`
        (height, width, 3) of whole numbers from 1 to MAX_INPUT_SIDE."""
        try:
            info = cls(tuple(str(name) for name in content["class_names"]), tuple(content["input_shape"]),
                       content.get("model"), bool(content.get("test_time_augmentation", False)),
                       content.get("exported_from"))
        except (KeyError, TypeError, AttributeError):
            return None
        shape_ok = len(info.input_shape) == 3 and info.input_shape[2] == 3 and all(
            isinstance(side, int) and not isinstance(side, bool) and 1 <= side <= MAX_INPUT_SIDE
            for side in info.input_shape)
        architecture_ok = info.architecture is None or isinstance(info.architecture, str)
        return info if shape_ok and architecture_ok and info.class_names else None


MAX_INPUT_SIDE = 1024  # the largest input side a model may have, and what `image_size` takes (data.MAX_IMAGE_SIDE)
MAX_INFO_BYTES = 16 * 2**20  # a model.json larger than this is not one (10,000 class names fit in ~0.5 MB)


def parse_model_info(content: bytes):
    """The ModelInfo in model.json's bytes, or None when they are not one."""
    try:
        parsed = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return ModelInfo.from_json(parsed) if isinstance(parsed, dict) else None


def write_model_info(folder, info: ModelInfo) -> Path:
    path = Path(folder) / MODEL_INFO_FILE
    fileio.write_json(path, info.as_json())
    return path


def folder_model_info(folder):
    """The ModelInfo in `folder`, or None."""
    content = _read_json(Path(folder) / MODEL_INFO_FILE)
    return ModelInfo.from_json(content) if content is not None else None


def data_source(model) -> str | None:
    """The data the run that wrote `model` (a run directory or one of its artefacts) was trained on, or None."""
    source = _run_metrics(model).get("data", {})
    return source["source"] if isinstance(source, dict) and isinstance(source.get("source"), str) else None


def held_out_validation(model) -> bool:
    """Whether the run that wrote `model` held out a validation split of its training images (its data's cache
    then has that split: loading the data alike finds the cache instead of decoding again)."""
    return _run_metrics(model).get("validation") == "holdout"


def _run_metrics(model) -> dict:
    """metrics.json of the run that wrote `model`, or {}."""
    for folder in describing_folders(resolve_model(model)):
        metrics = read_metrics(folder)
        if metrics:
            return metrics
    return {}
