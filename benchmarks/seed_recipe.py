"""Benchmark: the full seed recipe on CIFAR-10, appended to BENCHMARKS.md.

    python benchmarks/seed_recipe.py --data ../shared/data/cifar10-jpeg.tar.gz

Takes about 46 minutes on 2 CPU cores: run it alone on the machine (a second heavy process halves both).
Records wall time, per-epoch time, test accuracy after each phase, FLOPs per image and achieved GFLOP/s.
"""

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras

import imagerec
from imagerec import machine
from imagerec.training import recipes, run

REPOSITORY = Path(__file__).resolve().parents[1]


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds per epoch (training plus the per-epoch validation pass)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPOSITORY.parent / "shared/data/cifar10-jpeg.tar.gz"))
    parser.add_argument("--label", default="CIFAR-10 (JPEG copy)", help="how the data set is named in the table")
    parser.add_argument("--out", default=None, help="run directory (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(REPOSITORY / "BENCHMARKS.md"))
    arguments = parser.parse_args()

    arguments.commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True,
                                      text=True).stdout.strip() or "uncommitted"  # the code that runs
    started = time.perf_counter()
    dataset = imagerec.load_dataset(arguments.data, seed=arguments.seed)
    load_s = time.perf_counter() - started
    recipe = recipes.get_recipe("seed")
    timer = EpochTimer()
    run_dir = Path(arguments.out or tempfile.mkdtemp(prefix="seed-benchmark-"))
    result = run.train(dataset, recipe, run_dir, seed=arguments.seed, callbacks=[timer], report=False)
    append_result(arguments, dataset, result, timer.seconds, load_s)


def append_result(arguments, dataset, result, epoch_seconds, load_s) -> None:
    metrics, history = result.metrics, result.history
    flops = metrics["model"]["forward_flops_per_image"]
    # Training an image costs ~3 forward passes; the validation pass per epoch costs 1 per image.
    epoch_flops = 3 * flops * len(dataset.y_train) + flops * len(dataset.y_test)
    mean_epoch_s = sum(epoch_seconds) / len(epoch_seconds)
    plain = [record for record in history if record["phase"] == "plain"]
    versions = metrics["versions"]
    lines = [
        f"\n### Seed recipe, {arguments.label} — {datetime.date.today().isoformat()}\n",
        f"- Command: `python benchmarks/seed_recipe.py --data {arguments.data}` (commit {arguments.commit}, seed {arguments.seed})",
        f"- Machine: {machine.cpu_name()}, {os.cpu_count()} cores, CPU only, float32",
        f"- Versions: imagerec {versions['imagerec']}, TensorFlow {versions['tensorflow']}, Keras {versions['keras']}, "
        f"NumPy {versions['numpy']}, Python {versions['python']}",
        f"- Data load (decode or cache): {load_s:.1f} s; train {len(dataset.y_train)}, test {len(dataset.y_test)} images",
        f"- Model: {metrics['model']['parameters']:,} parameters, {flops / 1e6:.1f} MFLOP per image forward",
        f"- **Test accuracy {100 * metrics['test_accuracy']:.2f}%** (loss {metrics['test_loss']:.4f}); "
        f"after the {len(plain)} plain epochs: {100 * plain[-1]['val_accuracy']:.2f}%",
        f"- Training wall time {metrics['train_wall_s']:.0f} s ({metrics['train_wall_s'] / 60:.1f} min) for "
        f"{len(history)} epochs; epoch {min(epoch_seconds):.0f}–{max(epoch_seconds):.0f} s, mean {mean_epoch_s:.0f} s "
        f"(incl. validation); {len(dataset.y_train) / mean_epoch_s:.0f} train images/s; "
        f"~{epoch_flops / mean_epoch_s / 1e9:.1f} GFLOP/s achieved of ~157 GFLOP/s fp32 peak",
        f"- Final train accuracy {100 * history[-1]['accuracy']:.2f}%; per-epoch validation accuracy: "
        + ", ".join(f"{100 * record['val_accuracy']:.1f}" for record in history),
    ]
    text = "\n".join(line for line in lines if line) + "\n"
    with open(arguments.results, "a", encoding="utf-8") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
