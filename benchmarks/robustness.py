"""Corruption robustness of saved models: clean and mean CIFAR-10-C accuracy, per corruption and severity.

    python benchmarks/robustness.py RUN_DIR [RUN_DIR ...] --data ../shared/data/cifar10-jpeg.tar.gz \
        [--images 1000] [--corruptions all] [--out results.json]

Prints a table per model and writes every number as JSON. The same images (a stratified, seeded subset of the
test split) and the same corruption seed for every model, so models compare image for image.
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
    parser.add_argument("--out", default=None)
    arguments = parser.parse_args()
    names = corruptions.parse_names(arguments.corruptions)
    severities = corruptions.parse_severities(arguments.severities)
    results = {}
    for run in arguments.runs:
        classifier, dataset = workflows.load_model_and_data(run, arguments.data)
        rows = robustness.pick_images(dataset.y_test, arguments.images, arguments.seed)
        result = robustness.corruption_accuracy(classifier, dataset.x_test[rows], dataset.y_test[rows], names,
                                                severities, seed=arguments.seed)
        results[run] = result
        print(f"{run}: {robustness.summary_line(result)} ({result['wall_s']:.0f} s)")
        for name, row in result["corruptions"].items():
            print(f"  {name:18s} " + " ".join(f"{100 * value:5.1f}" for value in row["accuracy"].values())
                  + f"   mean {100 * row['mean']:5.1f}")
    if arguments.out:
        Path(arguments.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
