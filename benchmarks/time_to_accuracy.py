"""Benchmark: time to reach 85/90/93/94% test accuracy, per recipe, on the full CIFAR-10 copy.

    python benchmarks/time_to_accuracy.py --recipe airbench_small --set epochs=8 --seeds 0 1 2

The clock starts before the data is loaded (a cache hit; the one-off JPEG decode is reported apart) and
includes the whitening init, model building and XLA compilation; it stops during the evaluation after
every epoch (test accuracy as the recipe saves its model: with its test-time views). Results go to a
JSON file and a table appended to BENCHMARKS.md. Run it alone on the machine.

`--holdout N` tunes honestly: the last N training images (per seed, stratified) become the evaluation
set and the test split is never looked at (the DAWNBench rule).
"""

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from imagerec import data, evaluate, machine, models, recipes, train
from imagerec.classifier import Classifier

REPOSITORY = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.81, 0.85, 0.90, 0.93, 0.94)


class AccuracyClock(keras.callbacks.Callback):
    """After every epoch: stop the clock, score the test set as the recipe's saved model would, restart."""

    def __init__(self, started: float, recipe, images, labels, class_names, eval_from_epoch: int = 1):
        super().__init__()
        self.eval_from_epoch = eval_from_epoch
        self.started, self.recipe = started, recipe
        self.images, self.labels, self.class_names = images, labels, class_names
        self.paused_s = 0.0
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        paused = time.perf_counter()
        train_s = paused - self.started - self.paused_s
        if epoch + 1 < self.eval_from_epoch:
            self.epochs.append({"epoch": epoch + 1, "train_s": round(train_s, 2), "accuracy": None})
            return
        net = getattr(self.model, "net", self.model)  # the airbench recipe trains its net inside a trainer model
        inference = models.inference_model(net, test_time_augmentation=self.recipe.test_time_augmentation)
        classifier = Classifier.from_keras(inference, self.class_names)
        result = evaluate.evaluate(classifier, self.images, self.labels, batch_size=500)
        self.epochs.append({"epoch": epoch + 1, "train_s": round(train_s, 2), "accuracy": result["accuracy"],
                            "train_loss": float(logs.get("loss", float("nan"))) if logs else None})
        print(f"benchmark: epoch {epoch + 1}: {100 * result['accuracy']:.2f}% at {train_s:.1f} s of training",
              flush=True)
        self.paused_s += time.perf_counter() - paused


def holdout_split(dataset, count: int, seed: int):
    """Replace the test split by `count` training images (stratified, seeded) for tuning."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(dataset.x_train, dataset.y_train, test_size=count,
                                                        random_state=seed, stratify=dataset.y_train)
    return data.Dataset(x_train, y_train, x_test, y_test, dataset.class_names, dataset.source,
                        test_split=f"holdout {count}")


def run_once(arguments, recipe, seed: int) -> dict:
    started = time.perf_counter()
    dataset = data.load_dataset(arguments.data, seed=seed, progress=False)
    load_s = time.perf_counter() - started
    if arguments.holdout:
        dataset = holdout_split(dataset, arguments.holdout, seed)
    clock = AccuracyClock(started, recipe, dataset.x_test, dataset.y_test, dataset.class_names,
                          arguments.eval_from_epoch)
    with tempfile.TemporaryDirectory(prefix="tta-benchmark-") as run_dir:
        result = train.train(dataset, recipe, Path(run_dir) / "run", seed=seed, verbose=2, callbacks=[clock],
                             validate_each_epoch=False, report=False)
    flops = result.metrics["model"]["net_forward_flops_per_image"]
    # The airbench stream drops the last partial batch; the seed stream keeps it.
    steps = len(dataset.y_train) // recipe.batch_size if isinstance(recipe, recipes.AirbenchRecipe) else None
    images_per_epoch = steps * recipe.batch_size if steps else len(dataset.y_train)
    pure_train_s = clock.epochs[-1]["train_s"] - load_s
    reached = {f"{threshold:.2f}": next((epoch["train_s"] for epoch in clock.epochs
                                         if (epoch["accuracy"] or 0) >= threshold), None) for threshold in THRESHOLDS}
    return {"seed": seed, "load_s": round(load_s, 2), "epochs": clock.epochs, "reached_s": reached,
            "final_accuracy": clock.epochs[-1]["accuracy"], "final_train_s": clock.epochs[-1]["train_s"],
            "forward_mflops_per_image": round(flops / 1e6, 2),
            "train_images_per_s": round(images_per_epoch * len(clock.epochs) / pure_train_s, 1),
            # training ≈ 3 forward passes per image (forward + two backward products)
            "achieved_gflops": round(3 * flops * images_per_epoch * len(clock.epochs) / pure_train_s / 1e9, 1)}


def summarise(values):
    values = [value for value in values if value is not None]
    if not values:
        return "not reached"
    if len(values) == 1:
        return f"{values[0]:.0f} s"
    return f"{np.mean(values):.0f} ± {np.std(values):.0f} s"


def _xla(recipe) -> str:
    jit = getattr(recipe, "jit_compile", "auto")
    return "auto (off: no GPU)" if jit == "auto" else ("on" if jit else "off")


def write_table(arguments, recipe, runs, results_path: Path) -> str:
    versions = machine.versions()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True,
                            text=True).stdout.strip() or "uncommitted"
    evaluated_on = f"holdout of {arguments.holdout} training images" if arguments.holdout else "test split"
    header = "| threshold | " + " | ".join(f"seed {run['seed']}" for run in runs) + " | summary |"
    rows = [header, "|" + "---|" * (len(runs) + 2)]
    for threshold in THRESHOLDS:
        key = f"{threshold:.2f}"
        cells = [f"{run['reached_s'][key]:.0f} s" if run["reached_s"][key] is not None else "—" for run in runs]
        reached = [run["reached_s"][key] for run in runs]
        summary = summarise(reached) if all(value is not None for value in reached) else \
            f"{sum(value is not None for value in reached)}/{len(runs)} runs"
        rows.append(f"| {100 * threshold:.0f}% | " + " | ".join(cells) + f" | {summary} |")
    finals = [run["final_accuracy"] for run in runs]
    text = "\n".join([
        f"\n### Time to accuracy: recipe `{recipe.name}`, model `{recipe.model}`, {recipe.epochs} epochs, "
        f"batch {recipe.batch_size} — {arguments.label}, {datetime.date.today().isoformat()}\n",
        f"- Command: `python benchmarks/time_to_accuracy.py {' '.join(sys.argv[1:])}` (commit {commit}); "
        f"evaluated on the {evaluated_on}",
        f"- Machine: {machine.cpu_name()}, {os.cpu_count()} cores, CPU only, "
        f"{train.PRECISION_POLICIES[getattr(recipe, 'mixed_precision', 'off')]}, XLA {_xla(recipe)}; TensorFlow "
        f"{versions['tensorflow']}, Keras {versions['keras']}, Python {versions['python']}",
        f"- Final accuracy {100 * np.mean(finals):.2f}% (± {100 * np.std(finals):.2f}, n={len(runs)}) at "
        f"{summarise([run['final_train_s'] for run in runs])}; "
        f"{runs[0]['forward_mflops_per_image']:.1f} MFLOP/image forward; "
        f"{np.mean([run['train_images_per_s'] for run in runs]):.0f} train images/s ≈ "
        f"{np.mean([run['achieved_gflops'] for run in runs]):.0f} GFLOP/s (fp32 peak ~157-224 at 2.45-3.5 GHz)",
        f"- Per-epoch accuracy (seed {runs[0]['seed']}): "
        + ", ".join(f"{epoch['epoch']}: {100 * epoch['accuracy']:.1f}% @ {epoch['train_s']:.0f} s"
                    for epoch in runs[0]["epochs"] if epoch["accuracy"] is not None)
        + (f" (epochs before {arguments.eval_from_epoch} not evaluated)" if arguments.eval_from_epoch > 1 else ""),
        "", "Training time (s, clock as described in the script) to first reach each accuracy:", "",
        *rows, "",
    ])
    with open(results_path, "a", encoding="utf-8") as handle:
        handle.write(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=recipes.DEFAULT)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="any recipe field, as `imagerec train --set`: e.g. --set epochs=8 label_smoothing=0.1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--holdout", type=int, default=0, help="tune on this many held-out training images")
    parser.add_argument("--data", default=str(REPOSITORY.parent / "shared/data/cifar10-jpeg.tar.gz"))
    parser.add_argument("--label", default="CIFAR-10 (JPEG copy)")
    parser.add_argument("--json", default=None, help="write the results here (default: beside BENCHMARKS.md)")
    parser.add_argument("--results", default=str(REPOSITORY / "BENCHMARKS.md"))
    parser.add_argument("--no-table", action="store_true", help="JSON only (tuning runs)")
    parser.add_argument("--eval-from-epoch", type=int, default=1,
                        help="skip the (test-time-augmented, costly) evaluation of earlier epochs")
    arguments = parser.parse_args()

    recipe = recipes.get_recipe(arguments.recipe, **recipes.parse_settings(arguments.recipe, arguments.set))
    runs = [run_once(arguments, recipe, seed) for seed in arguments.seeds]
    output = {"recipe": dataclasses.asdict(recipe), "runs": runs,
              "holdout": arguments.holdout, "versions": machine.versions(), "cpu": machine.cpu_name(),
              "command": " ".join(sys.argv), "date": datetime.datetime.now().isoformat(timespec="seconds")}
    json_path = Path(arguments.json or tempfile.mkstemp(prefix="time_to_accuracy-", suffix=".json")[1])
    json_path.write_text(json.dumps(output, indent=2, default=str))
    print(f"benchmark: results in {json_path}")
    if not arguments.no_table:
        print(write_table(arguments, recipe, runs, Path(arguments.results)))


if __name__ == "__main__":
    main()
