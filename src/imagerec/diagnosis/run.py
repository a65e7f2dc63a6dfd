"""`doctor()`: what is wrong with a data set. Options checked → data loaded through the decode cache →
out-of-sample probabilities (`crossval`, or a saved model for the test split) → label issues (`labels`),
copies and leaks (`duplicates`), image issues (`quality`), class balance → issues.csv, issues.json,
doctor.json, doctor.npz and doctor.html (`outputs`), all written at once at the end."""

import dataclasses
import datetime
import sys
import time
from pathlib import Path

import numpy as np

from imagerec.data import load as data_load
from imagerec.diagnosis import crossval, duplicates, findings as finding_kinds, labels, outputs, quality, summary
from imagerec.errors import UserError, printable

DEFAULT_RECIPE = "airbench_small"  # ~1.5 min per fold on 2 cores for CIFAR-10's size
DEFAULT_FOLDS = 5


@dataclasses.dataclass
class DoctorResult:
    """The findings (ordered: kind, then most certain first), the summary (doctor.json) and where they are."""

    out_dir: Path
    findings: list
    summary: dict


@dataclasses.dataclass
class Judged:
    """The probabilities the label checks use: `train` (out-of-fold; None with a saved model, whose training
    split predictions would be in-sample) and `test`; the embeddings for the copy search (or None); how."""

    train: np.ndarray | None
    test: np.ndarray
    embeddings: dict | None
    how: dict
    folds: object = None  # crossval.OutOfSample, or None


def doctor(data, out_dir=None, *, recipe=DEFAULT_RECIPE, folds: int = DEFAULT_FOLDS, model=None, seed: int = 0,
           data_options=None, trust_model: bool = False, views: bool = True, progress: bool = True) -> DoctorResult:
    """Find label errors, duplicates and leaks, and broken or odd images in `data` (any source `train`
    takes; `data_options` as for `load_dataset`), and write issues.csv, issues.json, doctor.json, doctor.npz
    and doctor.html into `out_dir` (new or empty; default runs/doctor-<timestamp>).

    Labels are judged by `folds`-fold cross-validation of `recipe` over the training split (each image by the
    model that did not train on it) and the test split by all the fold models (with their test-time views
    when `views`); with `model` (a run directory or saved model), by that model on the test split only.
    Every option is checked before anything is written (UserError)."""
    started = time.perf_counter()
    out_dir = _checked_out_dir(out_dir)
    if model is None:
        crossval.check_fold_count(folds)
    recipe = _checked_recipe(recipe) if model is None else None
    classifier = None if model is None else _load_model(model, trust_model)
    dataset = _load(data, classifier, data_options)
    if classifier is None:
        crossval.check_folds(folds, dataset.y_train, dataset.class_names)
    judged = _judge(dataset, recipe, folds, seed, classifier, views, progress)
    stage = {"judge_s": time.perf_counter() - started}
    found, hashes = _findings(dataset, judged, stage)
    settings = {"recipe": getattr(recipe, "name", None), "folds": folds if classifier is None else None,
                "seed": seed, "model": None if model is None else str(model), "views": views}
    report = summary.build(dataset, found, judged, settings, {**stage, "wall_s": time.perf_counter() - started})
    outputs.write(out_dir, found, report, dataset, judged, hashes)
    if progress:
        print(printable(report["paragraph"]), file=sys.stderr, flush=True)
    return DoctorResult(out_dir, found, report)


def _checked_out_dir(out_dir) -> Path:
    path = Path(out_dir) if out_dir is not None else Path("runs") / datetime.datetime.now().strftime(
        "doctor-%Y%m%d-%H%M%S")
    if not str(out_dir if out_dir is not None else path).strip():
        raise UserError("`out_dir` is an empty name; give a folder (or None for runs/doctor-<timestamp>)")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"`out_dir` {path} already exists and is not an empty folder; choose a new one")
    return path


def _checked_recipe(recipe):
    from imagerec.training import recipes

    recipe = recipes.get_recipe(recipe) if isinstance(recipe, str) else recipe.validate()
    recipes.check_model(recipe)
    return recipe


def _load_model(model, trust_model: bool):
    from imagerec.artefacts import loading

    return loading.load_model(model, trust_model=trust_model)


def _load(data, classifier, data_options):
    options = dict(data_options or {})
    if classifier is not None:
        options["image_size"] = classifier.input_shape[:2]
    dataset = data_load.load_dataset(data, **options)
    if classifier is not None and tuple(classifier.class_names) != tuple(dataset.class_names):
        raise UserError(printable(f"the model's classes ({', '.join(classifier.class_names)[:200]}) are not the "
                                  f"data's ({', '.join(dataset.class_names)[:200]}): give the data it was trained "
                                  f"on, or a model of these classes"))
    return dataset


def _judge(dataset, recipe, folds, seed, classifier, views, progress) -> Judged:
    if classifier is not None:
        if progress:
            print("imagerec doctor: --model judges the test split only: its predictions on the training split "
                  "would be in-sample (it learnt those labels), so they are not used", file=sys.stderr, flush=True)
        how = {"test": f"the model {classifier.path}", "train": "not judged (a saved model's training predictions "
               "are in-sample)"}
        return Judged(None, classifier.predict_proba(dataset.x_test), None, how)
    out = crossval.cross_validate(dataset, crossval.recipe_fit(recipe, views), folds, seed, progress)
    how = {"train": f"out-of-fold: {folds}-fold cross-validation of {recipe.name}, each image by the model that "
                    f"did not train on it", "test": f"the mean of the {folds} fold models (none trained on it)"}
    return Judged(out.train, out.test, out.embeddings, how, out)


def _findings(dataset, judged: Judged, stage: dict) -> tuple:
    """(every finding, ordered; the perceptual hashes per split), timing each kind of check into `stage`."""
    started = time.perf_counter()
    found = []
    for split, probabilities in (("train", judged.train), ("test", judged.test)):
        if probabilities is not None:
            found += labels.label_findings(dataset.split_arrays(split)[1], probabilities, dataset.row_names(split),
                                           split, dataset.class_names)
    stage["labels_s"], started = time.perf_counter() - started, time.perf_counter()
    described = {split: _described(dataset, split, judged) for split in ("train", "test")}
    found += duplicates.duplicate_findings(described)
    stage["duplicates_s"], started = time.perf_counter() - started, time.perf_counter()
    found += _quality(dataset)
    stage["quality_s"] = time.perf_counter() - started
    return finding_kinds.ordered(found), {split: items["hashes"] for split, items in described.items()}


def _described(dataset, split: str, judged: Judged) -> dict:
    images = dataset.split_arrays(split)[0]
    return {"names": dataset.row_names(split), "digests": duplicates.pixel_digests(images),
            "hashes": duplicates.perceptual_hashes(images),
            "embeddings": None if judged.embeddings is None else judged.embeddings[split]}


def _quality(dataset) -> list:
    """Image issues of every file of the data (its own files when it has them, with the unreadable ones)."""
    rows = [(name, split) for split in ("train", "test") for name in dataset.row_names(split)]
    if dataset.paths is None or dataset.root is None:  # CIFAR-10's arrays: no files to read
        statistics = quality.array_statistics([*dataset.x_train, *dataset.x_test])
    else:
        rows += _unreadable_rows(dataset, {name for name, _ in rows})
        statistics = quality.file_statistics([Path(dataset.root) / name for name, _ in rows])
    return quality.quality_findings(statistics, [name for name, _ in rows], [split for _, split in rows])


def _unreadable_rows(dataset, decoded: set) -> list:
    """(path, split) of the tree's files that decoding skipped."""
    from imagerec.data import folders

    root = Path(dataset.root)
    _, listing = folders.list_tree(root)
    return [(file.relative_to(root).as_posix(), split) for split, files in listing.items() for file, _ in files
            if file.relative_to(root).as_posix() not in decoded]
