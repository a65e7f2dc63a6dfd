"""Corruption robustness of saved models: clean and mean CIFAR-10-C accuracy, per corruption and severity.

    python benchmarks/robustness.py RUN_DIR [RUN_DIR ...] --data ../shared/data/cifar10-jpeg.tar.gz \
        [--images 1000] [--corruptions all] [--split test|validation] [--out results.json]

Prints a table per model and writes every number as JSON. The same images (a stratified, seeded subset of the
test split) and the same corruption seed for every model, so models compare image for image. `--split
validation` takes them from the run's validation hold-out instead (runs trained with `--validation holdout`): the
split to tune robust training on, never the test split.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imagerec import workflows  # noqa: E402
from imagerec.data import corruptions  # noqa: E402
from imagerec.evaluation import robustness  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data", default=None)
    parser.add_argument("--images", type=int, default=robustness.DEFAULT_IMAGES)
    parser.add_argument("--corruptions", default="all")
    parser.add_argument("--severities", default="1-5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--out", default=None)
    arguments = parser.parse_args()
    names = corruptions.parse_names(arguments.corruptions)
    severities = corruptions.parse_severities(arguments.severities)
    results = {}
    for run in arguments.runs:
        images, labels, classifier = _split_of(run, arguments)
        rows = robustness.pick_images(labels, arguments.images, arguments.seed)
        result = {**robustness.corruption_accuracy(classifier, images[rows], labels[rows], names, severities,
                                                   seed=arguments.seed), "split": arguments.split}
        results[run] = result
        print(f"{run}: {robustness.summary_line(result)} ({result['wall_s']:.0f} s)")
        for name, row in result["corruptions"].items():
            print(f"  {name:18s} " + " ".join(f"{100 * value:5.1f}" for value in row["accuracy"].values())
                  + f"   mean {100 * row['mean']:5.1f}")
    if arguments.out:
        Path(arguments.out).write_text(json.dumps(results, indent=2))


def _split_of(run, arguments):
    """(images, labels, classifier) of the split asked for; the validation hold-out is the run's own (its data
    and split, so --data is not used for it)."""
    if arguments.split == "test":
        classifier, dataset = workflows.load_model_and_data(run, arguments.data)
        return dataset.x_test, dataset.y_test, classifier
    classifier, dataset = workflows.load_model_and_data(run)
    if dataset.x_val is None:
        sys.exit(f"{run} was not trained with --validation holdout: it has no validation split")
    return dataset.x_val, dataset.y_val, classifier


if __name__ == "__main__":
    main()
