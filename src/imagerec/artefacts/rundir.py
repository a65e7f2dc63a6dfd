"""The run directory's records: settings, resume state, history and metrics, and the lookups from an artefact
to the run that wrote it. File names are `layout`'s; model files are `saving`'s; model.json is `model_info`'s.
"""

import csv
import datetime
import json
import shutil
import sys
from pathlib import Path

from imagerec import fileio
from imagerec.artefacts import layout
from imagerec.artefacts.layout import BACKUP_METADATA, BACKUP_WEIGHTS, PREVIOUS
from imagerec.errors import UserError


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
    return layout.metrics_path(run_dir).is_file()


def check_finished(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not is_finished(run_dir):
        raise UserError(f"{run_dir} is not a finished run directory (it has no {layout.METRICS_FILE})")
    return run_dir


# ---------------------------------------------------------------- settings and resume state

ADDED_SETTINGS = {"calibration_images": 1000, "corruption_augment": 0.0}  # recipe fields newer than some run.json files, and their defaults


def record_settings(run_dir, settings: dict, resume: bool) -> None:
    """Write run.json when a run starts; a resumed run must bring the same settings (UserError naming the
    ones that differ, or saying that run.json is damaged)."""
    path = layout.settings_path(run_dir)
    if not (resume and path.exists()):
        fileio.write_json(path, settings)
        return
    saved, given = fileio.read_json_object(path), json.loads(json.dumps(settings))
    if saved is None or not isinstance(saved.get("recipe", {}), dict):
        raise UserError(f"cannot resume: {path} is damaged (not the settings imagerec wrote); start the run again "
                        f"in a new `run_dir`")
    # A setting added to imagerec since the run started is not in its run.json: at its default it is the same run.
    for key, value in ADDED_SETTINGS.items():
        if key not in saved["recipe"] and given["recipe"].get(key) == value:
            given["recipe"].pop(key)
    if saved != given:
        changed = sorted(key for key in {**saved.get("recipe", {}), **given["recipe"]}
                         if saved.get("recipe", {}).get(key) != given["recipe"].get(key))
        changed += [key for key in given if key != "recipe" and saved.get(key) != given[key]]
        raise UserError(f"`resume` must repeat the run's settings; these differ from {path}: {', '.join(changed)}")


def completed_epochs(run_dir) -> int:
    """Epochs already completed in `run_dir` (0 for a new run), from Keras' backup; history rows of later,
    unfinished epochs are dropped (the CSV row of an epoch is written before its backup, so a kill in
    between leaves an extra row, never a missing one).

    A damaged last backup (a kill while Keras wrote it, a full disk) is replaced by the previous one, as Keras
    itself would on a damaged weights file, but here before training starts, so that the history is cut at the
    epoch really resumed from; it is said in one line. UserError when neither is usable, or history.csv is
    damaged."""
    backup = layout.backup_dir(run_dir)
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
    _keep_history_rows(layout.history_csv(run_dir), completed)
    return completed


_NO_BACKUP = "no backup"


def _backup_epoch(backup: Path, suffix: str) -> tuple:
    """(completed epochs, None) of the backup's `suffix` version, or (0, what is wrong with it: _NO_BACKUP when
    it has neither file)."""
    weights, metadata = backup / (BACKUP_WEIGHTS + suffix), backup / (BACKUP_METADATA + suffix)
    if not weights.exists() and not metadata.exists():
        return 0, _NO_BACKUP
    content = fileio.read_json_object(metadata)
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


# ---------------------------------------------------------------- history and metrics

def read_history_csv(run_dir, phase_of) -> list:
    """Every epoch's record across resumed runs: {"epoch" (1-based), "phase": phase_of(epoch), metrics...}."""
    path = layout.history_csv(run_dir)
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
    fileio.write_json(layout.history_path(run_dir), {"epochs": history, "phases": phases})


def read_history(run_dir) -> list:
    """history.json's per-epoch records, or [] when the run has none."""
    return (fileio.read_json_object(layout.history_path(run_dir)) or {}).get("epochs", [])


def write_excluded(run_dir, rows: list) -> None:
    """excluded.csv: each file `train --exclude` left out, its split and why (the doctor's kind, or "listed")."""
    fileio.write_csv(layout.excluded_csv(run_dir), ("path", "split", "kind"), rows)


def write_metrics(run_dir, metrics: dict) -> None:
    fileio.write_json(layout.metrics_path(run_dir), metrics)


def read_metrics(run_dir) -> dict:
    """metrics.json of a finished run, or {} when there is none (or it is unreadable)."""
    return fileio.read_json_object(layout.metrics_path(run_dir)) or {}


# ---------------------------------------------------------------- from an artefact to its run

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
    for folder in layout.describing_folders(layout.resolve_model(model)):
        metrics = read_metrics(folder)
        if metrics:
            return metrics
    return {}
