"""Every file the doctor writes, and their names: all of them into a temporary folder renamed into place at the
end, so that an interrupted or failed doctor leaves nothing behind.

  issues.csv    one row per finding: path, split, kind, score, given, suggested, duplicate_of, detail
  issues.json   the same rows as a JSON list
  doctor.json   the summary: counts, class balance, folds, accuracy with and without leaks, settings, versions, times
  doctor.npz    the numbers behind it: out-of-sample probabilities, fold of each training image, embeddings,
                perceptual hashes (for thresholds of one's own)
  doctor.html   the page (`page`)
"""

from pathlib import Path

import numpy as np

from imagerec import fileio
from imagerec.data.exclude import FINDING_COLUMNS
from imagerec.diagnosis import page

ISSUES_CSV, ISSUES_JSON, SUMMARY_JSON, ARRAYS_FILE, PAGE_FILE = (
    "issues.csv", "issues.json", "doctor.json", "doctor.npz", "doctor.html")


def write(out_dir: Path, found: list, summary: dict, dataset, judged, hashes: dict) -> None:
    """Write every file into `out_dir` (new or empty), all or nothing."""
    with fileio.atomic_path(out_dir) as temporary:
        temporary.mkdir()
        fileio.write_csv(temporary / ISSUES_CSV, FINDING_COLUMNS, [finding.row() for finding in found])
        fileio.write_json(temporary / ISSUES_JSON, [finding.as_dict() for finding in found])
        fileio.write_json(temporary / SUMMARY_JSON, summary)
        np.savez_compressed(temporary / ARRAYS_FILE, **_arrays(dataset, judged, hashes))
        fileio.write_text(temporary / PAGE_FILE, page.render(summary, found, _pixels_lookup(dataset)))


def _arrays(dataset, judged, hashes: dict) -> dict:
    arrays = {"test_probabilities": judged.test, "test_labels": dataset.y_test, "train_labels": dataset.y_train,
              "train_hashes": hashes["train"], "test_hashes": hashes["test"],
              "train_names": np.asarray(dataset.row_names("train")), "test_names": np.asarray(dataset.row_names("test"))}
    if judged.train is not None:
        arrays["train_probabilities"] = judged.train
    if judged.folds is not None:
        arrays["fold_of_train"] = judged.folds.fold_of_train
    for split, values in (judged.embeddings or {}).items():
        arrays[f"{split}_embeddings"] = values.astype(np.float16)
    return arrays


def _pixels_lookup(dataset):
    """path → its decoded image (uint8), or None for a file that was not decoded."""
    where = {name: (split, row) for split in ("train", "test") for row, name in enumerate(dataset.row_names(split))}

    def pixels_of(name):
        if name not in where:
            return None
        split, row = where[name]
        return np.asarray(dataset.split_arrays(split)[0][row])
    return pixels_of
