"""The doctor's copies and leaks again from a finished doctor's saved hashes and embeddings (doctor.npz), with
today's thresholds (`imagerec.diagnosis.duplicates`), and the test accuracy of any model with and without the
leaked test images; a grid of leak pairs to look at by eye.

    python benchmarks/doctor_copies.py DOCTOR_DIR --data ../shared/data/cifar10-jpeg.tar.gz \
        [--model RUN_DIR] [--sample leaks.png]
"""

import argparse
import collections
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("doctor_dir", type=Path)
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    parser.add_argument("--model", help="also score this model with and without the leaked test images")
    parser.add_argument("--sample", help="write 32 random leak pairs side by side to this PNG")
    arguments = parser.parse_args()
    from imagerec.data import load
    from imagerec.diagnosis import duplicates

    dataset = load.load_dataset(arguments.data)
    arrays = np.load(arguments.doctor_dir / "doctor.npz")
    splits = {split: {"names": dataset.row_names(split), "digests": duplicates.pixel_digests(dataset.split_arrays(split)[0]),
                      "hashes": arrays[f"{split}_hashes"],
                      "embeddings": arrays[f"{split}_embeddings"] if f"{split}_embeddings" in arrays else None}
              for split in ("train", "test")}
    found = duplicates.duplicate_findings(splits)
    leaks = [finding for finding in found if finding.kind == "leak"]
    how = collections.Counter("embedding" if "embedding" in finding.detail else finding.detail.split(":")[0]
                              for finding in found)
    result = {"thresholds": {"max_hash_distance": duplicates.MAX_HASH_DISTANCE, "min_cosine": duplicates.MIN_COSINE,
                             "loose_hash_distance": duplicates.LOOSE_HASH_DISTANCE},
              "counts": dict(collections.Counter(finding.kind for finding in found)), "found_by": dict(how)}
    leaked = {finding.path for finding in leaks}
    clean = np.asarray([name not in leaked for name in dataset.row_names("test")])
    scores = {"doctor's judges": arrays["test_probabilities"]}
    if arguments.model:
        from imagerec.artefacts import loading

        scores[arguments.model] = loading.load_model(arguments.model).predict_proba(dataset.x_test)
    for name, probabilities in scores.items():
        correct = probabilities.argmax(1) == dataset.y_test
        result[f"accuracy of {name}"] = {"all": round(float(correct.mean()), 4),
                                         "without leaks": round(float(correct[clean].mean()), 4),
                                         "on the leaked": round(float(correct[~clean].mean()), 4) if (~clean).any() else None}
    print(json.dumps(result, indent=2))
    if arguments.sample and leaks:
        _sample(dataset, leaks, arguments.sample)


def _sample(dataset, leaks, path) -> None:
    from PIL import Image

    where = {name: (split, row) for split in ("train", "test") for row, name in enumerate(dataset.row_names(split))}
    picked = [leaks[index] for index in np.random.default_rng(0).choice(len(leaks), min(32, len(leaks)), replace=False)]
    grid = Image.new("RGB", (8 * 144, 4 * 72), "white")
    for index, finding in enumerate(picked):
        for offset, name in ((0, finding.path), (66, finding.duplicate_of)):
            split, row = where[name]
            tile = Image.fromarray(np.asarray(dataset.split_arrays(split)[0][row])).resize((64, 64), Image.NEAREST)
            grid.paste(tile, ((index % 8) * 144 + offset, (index // 8) * 72))
    grid.save(path)
    for finding in picked:
        print(finding.path, finding.duplicate_of, finding.detail)


if __name__ == "__main__":
    main()
