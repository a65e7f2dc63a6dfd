"""A copy of an image-folder tree with a fraction of its training labels flipped at random, for measuring the
doctor (`doctor_labels.py flipped`). Files are hard links (no space, the originals untouched); a flipped file
goes to another class's folder as `flipped_<true class>_<name>`, listed in flipped.json beside the copy.

    python benchmarks/flip_labels.py ~/.cache/imagerec/extracted/cifar10-jpeg.tar.gz-*/cifar10-jpeg /tmp/flipped \
        --fraction 0.02 --seed 0
"""

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np


def flip(source: Path, target: Path, fraction: float, seed: int) -> list:
    classes = sorted(child.name for child in (source / "train").iterdir() if child.is_dir())
    files = [path for name in classes for path in sorted((source / "train" / name).iterdir())]
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(len(files), int(round(fraction * len(files))), replace=False).tolist())
    flipped = []
    for split in ("train", "test"):
        for name in classes:
            (target / split / name).mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files):
        true_class = path.parent.name
        if index in chosen:
            new_class = classes[(classes.index(true_class) + int(rng.integers(1, len(classes)))) % len(classes)]
            link = target / "train" / new_class / f"flipped_{true_class}_{path.name}"
            flipped.append({"path": link.relative_to(target).as_posix(), "true": true_class, "given": new_class})
        else:
            link = target / "train" / true_class / path.name
        os.link(path, link)
    for path in (source / "test").rglob("*"):
        if path.is_file():
            os.link(path, target / path.relative_to(source))
    return flipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    if arguments.target.exists():
        shutil.rmtree(arguments.target)
    flipped = flip(arguments.source, arguments.target, arguments.fraction, arguments.seed)
    (arguments.target.parent / f"{arguments.target.name}-flipped.json").write_text(json.dumps(flipped, indent=1))
    print(f"{len(flipped)} training labels flipped; list in {arguments.target.parent / (arguments.target.name + '-flipped.json')}")


if __name__ == "__main__":
    main()
