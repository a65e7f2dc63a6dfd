"""The doctor's numbers (doctor.json) and its one-paragraph summary: counts per kind and split, the class
balance, the folds' accuracy, test accuracy with and without the leaked images, settings, versions, times."""

import numpy as np

from imagerec import machine
from imagerec.diagnosis import findings as finding_kinds

IMAGE_KINDS = ("unreadable", "blank", "low_information", "dark", "light", "blurry", "grayscale", "odd_size",
               "odd_aspect_ratio")
SKEW_NOTE_RATIO = 3  # largest / smallest class count from which the balance notes a skew


def build(dataset, found: list, judged, settings: dict, wall: dict) -> dict:
    """doctor.json's content, with its "paragraph"."""
    counts = finding_kinds.counts(found)
    numbers = {
        "data": {key: value for key, value in dataset.summary().items() if key != "skipped"},
        "settings": settings, "splits": ["train", "test"], "counts": counts, "total_findings": len(found),
        "balance": balance(dataset, settings.get("folds")), "judged_by": judged.how,
        "folds": None if judged.folds is None else {
            "accuracy": [round(value, 4) for value in judged.folds.fold_accuracy],
            "cross_validated_accuracy": round(judged.folds.cross_validated_accuracy, 4),
            "wall_s": [[round(value, 1) for value in pair] for pair in judged.folds.fold_wall_s]},
        "accuracy": leak_accuracy(dataset, found, judged.test),
        "wall_s": {key: round(value, 1) for key, value in wall.items()}, "versions": machine.versions()}
    numbers["paragraph"] = paragraph(dataset, numbers)
    return numbers


def balance(dataset, folds) -> dict:
    """Images per class and split, and notes on classes too small or too skewed."""
    table = {split: {name: int(count) for name, count in zip(
        dataset.class_names, np.bincount(dataset.split_arrays(split)[1], minlength=dataset.num_classes))}
        for split in ("train", "test")}
    train = np.asarray(list(table["train"].values()))
    notes = []
    if train.max() >= SKEW_NOTE_RATIO * max(train.min(), 1):
        notes.append(f"skewed classes: {dataset.class_names[int(train.argmax())]} has {train.max()} training images, "
                     f"{dataset.class_names[int(train.argmin())]} {train.min()} (train --class-weight balanced "
                     f"weighs them evenly)")
    empty = [name for name, count in table["test"].items() if count == 0]
    if empty:
        notes.append(f"no test image of {', '.join(empty[:5])}")
    if folds and train.min() < 2 * folds:
        notes.append(f"the smallest class has {train.min()} training images for {folds} folds: its fold models "
                     f"see few of it")
    return {"counts": table, "notes": notes}


def leak_accuracy(dataset, found: list, test_probabilities) -> dict:
    """Test accuracy of the judging models on every test image and on those without a copy in train."""
    correct = np.asarray(test_probabilities).argmax(1) == np.asarray(dataset.y_test)
    names = dataset.row_names("test")
    leaked = {finding.path for finding in found if finding.kind == "leak"}
    clean = np.asarray([name not in leaked for name in names], bool)
    return {"test": round(float(correct.mean()), 4) if len(correct) else None,
            "test_without_leaks": round(float(correct[clean].mean()), 4) if clean.any() else None,
            "leaked_test_images": int((~clean).sum()),
            "leaked_accuracy": round(float(correct[~clean].mean()), 4) if (~clean).any() else None}


def paragraph(dataset, numbers: dict) -> str:
    """The terminal summary: one paragraph."""
    counts, data, accuracy = numbers["counts"], numbers["data"], numbers["accuracy"]
    def count(kind, split=None):
        return sum(n for s, n in counts.get(kind, {}).items() if split in (None, s))
    folds = numbers["folds"]
    judged = (f"{numbers['settings']['folds']}-fold {numbers['settings']['recipe']}, out-of-fold accuracy "
              f"{100 * folds['cross_validated_accuracy']:.1f}%; the test split judged by the fold models together, "
              f"{100 * accuracy['test']:.1f}%" if folds else
              f"the test split judged by the model, {100 * accuracy['test']:.1f}%; training labels not judged")
    images = ", ".join(f"{count(kind)} {kind.replace('_', ' ')}" for kind in IMAGE_KINDS if count(kind)) or "none"
    leaks = (f"{accuracy['leaked_test_images']} test images have a copy in train (test accuracy "
             f"{100 * accuracy['test']:.1f}%, {100 * accuracy['test_without_leaks']:.1f}% without them)"
             if accuracy["leaked_test_images"] and accuracy["test_without_leaks"] is not None
             else "no test image has a copy in train")
    return (f"imagerec doctor: {data['source']}: {data['train_count']:,} train and {data['test_count']:,} test images, "
            f"{len(data['class_names'])} classes. Label issues: {count('label', 'train'):,} in train, "
            f"{count('label', 'test'):,} in test ({judged}). Copies within a split: {count('exact_duplicate'):,} "
            f"exact, {count('near_duplicate'):,} near; {leaks}. Image issues: {images}. "
            f"{numbers['total_findings']:,} findings in {numbers['wall_s']['wall_s']:.0f} s.")
