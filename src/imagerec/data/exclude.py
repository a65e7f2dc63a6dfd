"""Files left out of training (`train --exclude FILE`): a doctor's issues.csv, or a text file of paths, read
and checked before anything is decoded or written, then applied to a Dataset's training rows. The user's data
is never touched: the rows are dropped from the arrays in memory.

Rows of the run's test split stay in it (it is what accuracy is measured on; dropping the images a model gets
wrong from it would only flatter the model) and are counted as kept.
"""

import collections
import csv
import dataclasses
import io
from pathlib import Path

import numpy as np

from imagerec.errors import UserError, printable

# The columns of a doctor's issues.csv (`imagerec doctor`); a CSV with any other column is refused, so that a
# file of another kind is not read as a list of paths.
FINDING_COLUMNS = ("path", "split", "kind", "score", "given", "suggested", "duplicate_of", "detail")
TRAINING_SPLITS = ("train", "validation")
MAX_EXCLUDE_BYTES = 64 * 1024 * 1024  # a list of every file of a large data set is a few MB


@dataclasses.dataclass(frozen=True)
class Exclusions:
    """What a file asks to leave out: {path: why} ("label", "near_duplicate", ... or "listed")."""

    file: str
    reasons: dict

    def __len__(self) -> int:
        return len(self.reasons)


def read_exclusions(file) -> Exclusions:
    """The paths `file` lists: a CSV with the doctor's header (a `path` column; `kind` gives each one's reason),
    or a text file of one path per line relative to the data's root (a line starting with '#' is a comment).
    UserError for a
    missing, empty or unreadable file, or a CSV column that is not the doctor's."""
    path = Path(file)
    if not path.is_file():
        raise UserError(f"`exclude` file does not exist: {path}")
    if path.stat().st_size > MAX_EXCLUDE_BYTES:
        raise UserError(f"`exclude` file {path} is over {MAX_EXCLUDE_BYTES >> 20} MB: give a list of paths")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as error:
        raise UserError(f"cannot read `exclude` file {path}: {type(error).__name__}") from None
    first = text.split("\n", 1)[0].strip()
    reasons = _csv_reasons(text, path) if first.split(",")[0] == "path" else _listed(text)
    if not reasons:
        raise UserError(f"`exclude` file {path} lists no paths")
    return Exclusions(str(path), reasons)


def _csv_reasons(text: str, path: Path) -> dict:
    reader = csv.DictReader(io.StringIO(text))
    unknown = [column for column in reader.fieldnames or () if column not in FINDING_COLUMNS]
    if unknown:
        raise UserError(printable(f"`exclude` file {path} has column(s) {', '.join(unknown[:3])} that a doctor's "
                                  f"issues.csv does not ({', '.join(FINDING_COLUMNS)})"))
    reasons = {}
    for row in reader:
        name = (row.get("path") or "").strip()
        if name:  # a file with several findings keeps its first kind (the CSV lists the most certain first)
            reasons.setdefault(name, (row.get("kind") or "listed").strip() or "listed")
    return reasons


def _listed(text: str) -> dict:
    lines = (line.strip() for line in text.splitlines())  # '#' inside a line is a name: "train#41"
    return {line: "listed" for line in lines if line and not line.startswith("#")}


def apply(dataset, exclusions: Exclusions):
    """(the Dataset without the listed training rows, the record of what was left out). UserError, before
    anything is dropped, for a listed path the data does not have."""
    names = {split: dataset.row_names(split) for split in ("train", "test", "validation")
             if dataset.split_arrays(split)[1] is not None}
    split_of = {name: split for split, split_names in names.items() for name in split_names}
    # A doctor's "unreadable" rows name files decoding skipped already: nothing to leave out, and no mistake.
    unknown = [name for name, kind in exclusions.reasons.items() if name not in split_of and kind != "unreadable"]
    if unknown:
        raise UserError(printable(f"`exclude` file {exclusions.file} lists {len(unknown)} path(s) not in "
                                  f"{dataset.source} (paths are relative to its root, e.g. "
                                  f"{next(iter(split_of), 'train/cat/0001.jpg')}): {', '.join(unknown[:3])}"))
    changes, left_out = {"paths": dataset.paths}, []
    for split in TRAINING_SPLITS:
        if split not in names:
            continue
        drop = np.asarray([name in exclusions.reasons for name in names[split]], bool)
        left_out += [(name, split, exclusions.reasons[name]) for name in np.asarray(names[split], object)[drop]]
        changes.update(_without_rows(dataset, split, ~drop, changes["paths"]))
    _check_classes_left(dataset, changes.get("y_train", dataset.y_train))
    record = _record(exclusions, left_out, kept_in_test=sum(split_of.get(name) == "test" for name in exclusions.reasons))
    return dataclasses.replace(dataset, **changes), record


def _without_rows(dataset, split: str, keep: np.ndarray, paths) -> dict:
    if keep.all():  # nothing of this split listed: keep its memory map rather than copy it
        return {"paths": paths}
    images, labels = dataset.split_arrays(split)
    suffix = "train" if split == "train" else "val"
    if paths is not None:
        paths = {**paths, split: tuple(np.asarray(paths[split], object)[keep])}
    return {f"x_{suffix}": images[keep], f"y_{suffix}": labels[keep], "paths": paths}


def _check_classes_left(dataset, labels) -> None:
    counts = np.bincount(labels, minlength=dataset.num_classes)
    empty = [name for name, count in zip(dataset.class_names, counts) if count == 0]
    if empty:
        raise UserError(printable(f"`exclude` leaves no training image of class(es) {', '.join(empty[:5])}"))


def _record(exclusions: Exclusions, left_out: list, kept_in_test: int) -> dict:
    """What a run records (metrics.json "excluded"; the files themselves in excluded.csv)."""
    return {"file": exclusions.file, "count": len(left_out),
            "by_kind": dict(collections.Counter(kind for _, _, kind in left_out).most_common()),
            "by_split": dict(collections.Counter(split for _, split, _ in left_out)),
            "kept_in_test": int(kept_in_test), "rows": left_out}
