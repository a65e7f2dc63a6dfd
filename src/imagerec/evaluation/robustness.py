"""Robustness: accuracy on corrupted copies of the test images, per corruption and severity.

The headline is CIFAR-10-C's: the mean accuracy over its corruptions and 5 severities, beside the clean
accuracy of the same images (RobustBench's `corruptions` leaderboard reports the same pair). What users meet
(GIF palettes, heavy JPEG, thumbnails, grayscale) is reported apart and not averaged in.
"""

import sys
import time

import numpy as np

from imagerec.data import corruptions
from imagerec.errors import UserError, printable

DEFAULT_IMAGES = 1000  # test images corrupted by default: 14 x 5 x 1,000 predictions, minutes on 2 cores


def pick_images(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted rows of `count` test images, the same share of each class (seeded); every row when `count` is 0 or
    at least the split's size."""
    labels = np.asarray(labels)
    if count < 0:
        raise UserError(f"`corruption_images` must be 0 (all) or more, got {count}")
    if count == 0 or count >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    try:
        _, taken = train_test_split(np.arange(len(labels)), test_size=count, random_state=seed, stratify=labels)
    except ValueError:  # a class too small to be represented: a plain seeded sample
        taken = np.random.default_rng(seed).choice(len(labels), count, replace=False)
    return np.sort(taken)


def corruption_accuracy(classifier, images: np.ndarray, labels: np.ndarray, names, severities=corruptions.SEVERITIES,
                        seed: int = 0, batch_size: int = 256, progress: bool = True) -> dict:
    """Accuracy of `classifier` on `images` corrupted by each of `names` at each of `severities` (JSON-ready).

    Returns {"count", "seed", "severities", "clean_accuracy", "corruptions": {name: {"family", "cifar_c",
    "accuracy": {"severity": accuracy}, "mean"}}, "mean_corruption_accuracy" (over the CIFAR-10-C corruptions
    asked, None if none), "cifar_c_evaluated", "left_out" ({name: why} of CIFAR-10-C's not computed),
    "wall_s"}. A line per corruption on stderr when `progress`.
    """
    labels = np.asarray(labels).astype(np.int64)
    if len(images) == 0:
        raise UserError("no images to corrupt")
    started = time.perf_counter()
    clean = _accuracy(classifier, images, labels, batch_size)
    table = {}
    for number, name in enumerate(names, 1):
        began = time.perf_counter()
        accuracy = {str(severity): _accuracy(classifier, corruptions.corrupt(images, name, severity, seed), labels,
                                             batch_size)
                    for severity in corruptions.levels_of(name, severities)}
        corruption = corruptions.CORRUPTIONS[name]
        table[name] = {"family": corruption.family, "cifar_c": corruption.cifar_c, "accuracy": accuracy,
                       "mean": float(np.mean(list(accuracy.values())))}
        if progress:
            print(printable(f"robustness: {number}/{len(names)} {name}: "
                            + " ".join(f"{100 * value:.1f}" for value in accuracy.values())
                            + f"% ({time.perf_counter() - began:.0f} s)"), file=sys.stderr, flush=True)
    cifar_c = [name for name in table if table[name]["cifar_c"]]
    return {"count": int(len(labels)), "seed": int(seed), "severities": list(severities),
            "clean_accuracy": clean, "corruptions": table,
            "mean_corruption_accuracy": float(np.mean([table[name]["mean"] for name in cifar_c])) if cifar_c else None,
            "cifar_c_evaluated": len(cifar_c), "left_out": dict(corruptions.LEFT_OUT),
            "wall_s": round(time.perf_counter() - started, 1)}


def _accuracy(classifier, images, labels, batch_size) -> float:
    return float((classifier.predict_proba(images, batch_size=batch_size).argmax(axis=1) == labels).mean())


def summary_line(result: dict) -> str:
    """One line: the clean and mean corruption accuracy, and the worst corruption (of the "split" the result
    names: test unless said)."""
    worst = min(result["corruptions"].items(), key=lambda item: item[1]["mean"])
    mean = result["mean_corruption_accuracy"]
    return (f"clean {100 * result['clean_accuracy']:.2f}%"
            + (f", mean over {result['cifar_c_evaluated']} CIFAR-10-C corruptions {100 * mean:.2f}%"
               if mean is not None else "")
            + f", worst {worst[0]} {100 * worst[1]['mean']:.2f}% on {result['count']} "
              f"{result.get('split', 'test')} images")
