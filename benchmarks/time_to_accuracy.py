"""Benchmark: time to reach 85/90/93/94% test accuracy, per recipe, on the full CIFAR-10 copy.

    python benchmarks/time_to_accuracy.py --recipe airbench_small --set epochs=8 --seeds 0 1 2

The clock starts before the data is loaded (a cache hit; the one-off JPEG decode is reported apart) and
includes the whitening init, model building and XLA compilation; it stops during the evaluation after
every epoch (test accuracy as the recipe saves its model: with its test-time views). Results go to a
JSON file and a table appended to BENCHMARKS.md. Run it alone on the machine.

`--holdout N` tunes honestly: the last N training images (per seed, stratified) become the evaluation
set and the test split is never looked at (the DAWNBench rule).

`--backend jax --device gpu` trains on Keras' JAX backend on the GPU (benchmarks/gpu_check.sh); the XLA
compile time (the first step's extra time over a typical step) is reported apart and left out of the
training time. `--reference LABEL ACCURACY SECONDS IMAGES_PER_S` adds another trainer's published or
measured figures to the table, so the comparison is one table.
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


def _choose_backend() -> None:
    """--backend and --device act before Keras (and JAX) are imported: both read their settings once."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--backend", default=None)
    early.add_argument("--device", default=None)
    known, _ = early.parse_known_args()
    if known.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if known.backend:
        from imagerec import backends

        backends.use(known.backend)


_choose_backend()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from imagerec import backends, data, machine, models  # noqa: E402
from imagerec.artefacts.classifier import Classifier  # noqa: E402
from imagerec.evaluation import evaluate  # noqa: E402
from imagerec.training import precision, recipes, run  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.81, 0.85, 0.90, 0.93, 0.94)
# Dense bfloat16 tensor-core peaks (TFLOP/s, NVIDIA's data sheets, SXM parts) by device name.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0}


class AccuracyClock(keras.callbacks.Callback):
    """After every epoch: stop the clock, score the test set as the recipe's saved model would, restart."""

    def __init__(self, started: float, recipe, images, labels, class_names, eval_from_epoch: int = 1):
        super().__init__()
        self.eval_from_epoch = eval_from_epoch
        self.started, self.recipe = started, recipe
        self.images, self.labels, self.class_names = images, labels, class_names
        self.paused_s = 0.0
        self.epochs = []
        self.step_ends = []  # perf_counter at the end of every training step of the first epoch
        self.classifier = None

    def on_train_begin(self, logs=None):
        self.step_ends = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        if not self.epochs:
            self.step_ends.append(time.perf_counter())

    def compile_s(self) -> float:
        """The first step's time beyond a typical step's: tracing and XLA compilation (and warm-up)."""
        steps = np.diff(self.step_ends)
        return float(steps[0] - np.median(steps[1:])) if len(steps) > 2 else 0.0

    def on_epoch_end(self, epoch, logs=None):
        paused = time.perf_counter()
        train_s = paused - self.started - self.paused_s
        if epoch + 1 < self.eval_from_epoch:
            self.epochs.append({"epoch": epoch + 1, "train_s": round(train_s, 2), "accuracy": None})
            return
        if self.classifier is None:  # built once: its compiled predict step serves every epoch
            net = getattr(self.model, "net", self.model)  # the airbench recipe trains its net in a trainer model
            inference = models.inference_model(net, test_time_augmentation=self.recipe.test_time_augmentation)
            self.classifier = Classifier.from_keras(inference, self.class_names)
        result = evaluate.evaluate(self.classifier, self.images, self.labels, batch_size=500)
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
    if arguments.subset:  # a rehearsal: N random training and N/5 random test images (folders come class by class)
        rng = np.random.default_rng(seed)
        train_part = rng.permutation(len(dataset.y_train))[:arguments.subset]
        test_part = rng.permutation(len(dataset.y_test))[:arguments.subset // 5]
        dataset = data.Dataset(dataset.x_train[train_part], dataset.y_train[train_part], dataset.x_test[test_part],
                               dataset.y_test[test_part], dataset.class_names, dataset.source,
                               test_split=dataset.test_split)
    clock = AccuracyClock(started, recipe, dataset.x_test, dataset.y_test, dataset.class_names,
                          arguments.eval_from_epoch)
    with tempfile.TemporaryDirectory(prefix="tta-benchmark-") as run_dir:
        result = run.train(dataset, recipe, Path(run_dir) / "run", seed=seed, verbose=2, callbacks=[clock],
                             validation="none", report=False)
    flops = result.metrics["model"]["net_forward_flops_per_image"]
    # The airbench stream drops the last partial batch; the seed stream keeps it.
    steps = len(dataset.y_train) // recipe.batch_size if isinstance(recipe, recipes.AirbenchRecipe) else None
    images_per_epoch = steps * recipe.batch_size if steps else len(dataset.y_train)
    compile_s = clock.compile_s() if arguments.exclude_compile else 0.0
    for epoch in clock.epochs:  # the clock's training time, less the compilation when it is reported apart
        epoch["train_s"] = round(epoch["train_s"] - compile_s, 2)
    pure_train_s = clock.epochs[-1]["train_s"] - load_s
    reached = {f"{threshold:.2f}": next((epoch["train_s"] for epoch in clock.epochs
                                         if (epoch["accuracy"] or 0) >= threshold), None) for threshold in THRESHOLDS}
    return {"seed": seed, "load_s": round(load_s, 2), "compile_s": round(compile_s, 2), "epochs": clock.epochs,
            "reached_s": reached, "final_accuracy": clock.epochs[-1]["accuracy"],
            "final_train_s": clock.epochs[-1]["train_s"], "forward_mflops_per_image": round(flops / 1e6, 2),
            "train_images_per_s": round(images_per_epoch * len(clock.epochs) / pure_train_s, 1),
            # training ≈ 3 forward passes per image (forward + two backward products)
            "achieved_gflops": round(3 * flops * images_per_epoch * len(clock.epochs) / pure_train_s / 1e9, 1)}


def bf16_peak_tflops(accelerator):
    """The accelerator's dense bf16 peak from BF16_PEAK_TFLOPS, or None (a CPU, an unknown chip)."""
    return next((peak for name, peak in BF16_PEAK_TFLOPS.items() if accelerator and name in accelerator), None)


def summarise(values):
    values = [value for value in values if value is not None]
    if not values:
        return "not reached"
    if len(values) == 1:
        return f"{values[0]:.0f} s"
    return f"{np.mean(values):.0f} ± {np.std(values):.0f} s"


def _xla(recipe) -> str:
    if not backends.is_tensorflow():
        return "on (JAX compiles every step with XLA)"
    jit = getattr(recipe, "jit_compile", "auto")
    return "auto (off: no GPU)" if jit == "auto" else ("on" if jit else "off")


def _machine_line(recipe, versions) -> str:
    policy = precision.POLICIES[precision.resolve_precision(getattr(recipe, "mixed_precision", "off"))]
    backend = versions["keras_backend"]
    library = f"TensorFlow {versions['tensorflow']}" if backend == "tensorflow" else f"JAX {versions['jax']}"
    software = f"Keras {versions['keras']} on {backend} ({library}), Python {versions['python']}"
    if versions["accelerator"]:
        return f"- Machine: {versions['accelerator']} (host {machine.cpu_name()}), {policy}, XLA; {software}"
    return (f"- Machine: {machine.cpu_name()}, {os.cpu_count()} cores, CPU only, {policy}, XLA {_xla(recipe)}; "
            f"{software}")


def _speed_line(runs, versions, recipe) -> str:
    images_per_s = np.mean([run["train_images_per_s"] for run in runs])
    gflops = np.mean([run["achieved_gflops"] for run in runs])
    peak = bf16_peak_tflops(versions["accelerator"])
    # 2 cores x 2 AVX-512 FMA units: ~157-224 GFLOP/s fp32 at 2.45-3.5 GHz, twice that in bf16 (AVX512_BF16)
    cpu_peak = "bf16 peak ~314-448" if precision.resolve_precision(recipe.mixed_precision) == "bf16" else \
        "fp32 peak ~157-224"
    against = (f"{gflops / 1e3:.1f} TFLOP/s = {100 * gflops / 1e3 / peak:.1f}% of the chip's {peak:.0f} TFLOP/s "
               f"dense bf16 peak" if peak else f"{gflops:.0f} GFLOP/s ({cpu_peak} at 2.45-3.5 GHz)")
    compile_s = [run["compile_s"] for run in runs]
    compiled = f"; XLA compile {np.mean(compile_s):.1f} s, not in the training time" if any(compile_s) else ""
    return f"{images_per_s:.0f} train images/s ≈ {against}{compiled}"


def _reference_rows(arguments, runs) -> list:
    """imagerec next to the reference figures given on the command line, one row each."""
    finals = [run["final_accuracy"] for run in runs]
    rows = ["| trainer | final accuracy | training time | train images/s |", "|---|---|---|---|",
            f"| imagerec ({arguments.recipe}, this table) | {100 * np.mean(finals):.2f}% | "
            f"{summarise([run['final_train_s'] for run in runs])} | "
            f"{np.mean([run['train_images_per_s'] for run in runs]):.0f} |"]
    for label, accuracy, seconds, images_per_s in arguments.reference:
        rows.append(f"| {label} | {float(accuracy):.2f}% | {float(seconds):.0f} s | {float(images_per_s):.0f} |")
    return rows


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
        _machine_line(recipe, versions),
        f"- Final accuracy {100 * np.mean(finals):.2f}% (± {100 * np.std(finals):.2f}, n={len(runs)}) at "
        f"{summarise([run['final_train_s'] for run in runs])}; "
        f"{runs[0]['forward_mflops_per_image']:.1f} MFLOP/image forward; {_speed_line(runs, versions, recipe)}",
        f"- Per-epoch accuracy (seed {runs[0]['seed']}): "
        + ", ".join(f"{epoch['epoch']}: {100 * epoch['accuracy']:.1f}% @ {epoch['train_s']:.0f} s"
                    for epoch in runs[0]["epochs"] if epoch["accuracy"] is not None)
        + (f" (epochs before {arguments.eval_from_epoch} not evaluated)" if arguments.eval_from_epoch > 1 else ""),
        "", "Training time (s, clock as described in the script) to first reach each accuracy:", "",
        *rows, "", *(_reference_rows(arguments, runs) + [""] if arguments.reference else []),
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
    parser.add_argument("--backend", choices=backends.BACKENDS, default=None, help="Keras backend (default: "
                        "$KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto",
                        help="cpu: keep JAX off any GPU (a CPU rehearsal of the GPU check)")
    parser.add_argument("--exclude-compile", action="store_true",
                        help="report the first step's compilation apart, not in the training time (GPU runs)")
    parser.add_argument("--subset", type=int, default=0, help="train on N random images only (rehearsals)")
    parser.add_argument("--reference", nargs=4, action="append", default=[],
                        metavar=("LABEL", "ACCURACY", "SECONDS", "IMAGES_PER_S"),
                        help="another trainer's figures, shown beside imagerec's (repeatable)")
    arguments = parser.parse_args()

    recipe = recipes.get_recipe(arguments.recipe, **recipes.parse_settings(arguments.recipe, arguments.set))
    runs = [run_once(arguments, recipe, seed) for seed in arguments.seeds]
    output = {"recipe": dataclasses.asdict(recipe), "runs": runs,
              "holdout": arguments.holdout, "versions": machine.versions(), "cpu": machine.cpu_name(),
              "reference": arguments.reference,
              "command": " ".join(sys.argv), "date": datetime.datetime.now().isoformat(timespec="seconds")}
    json_path = Path(arguments.json or tempfile.mkstemp(prefix="time_to_accuracy-", suffix=".json")[1])
    json_path.write_text(json.dumps(output, indent=2, default=str))
    print(f"benchmark: results in {json_path}")
    if not arguments.no_table:
        print(write_table(arguments, recipe, runs, Path(arguments.results)))


if __name__ == "__main__":
    main()
