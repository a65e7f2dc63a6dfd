"""Reports: draw an evaluation's numbers as PNG figures and one self-contained report.html.

Reporting only draws: the numbers come from `evaluate.classification_numbers`, and the training curves from
the history it is given (`train` draws a run's curves here too). Every figure is written as a PNG and
embedded in the HTML as base64, so the page opens offline with no external script, style sheet, font or
image.
"""

import base64
import html
import json
import warnings
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")  # files only, never a window; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402

from imagerec import fileio  # noqa: E402
from imagerec.evaluation import evaluate  # noqa: E402
from imagerec.errors import printable  # noqa: E402

REPORT_JSON, REPORT_HTML = "report.json", "report.html"
COLOUR_MAP = "viridis"  # perceptually uniform and monotonic in lightness: reads in grey too


def write_report(out_dir, classifier, images: np.ndarray, labels: np.ndarray, *, dataset=None, history=None,
                 run=None, probabilities=None) -> dict:
    """Evaluate `classifier` on uint8 `images`/`labels` and write report.json, the figures and report.html
    into `out_dir` (created if needed). `dataset` (a data.Dataset) adds the data overview: class counts per
    split, skipped files, samples; `history` (per-epoch records) adds the training curves; `run` (a run's
    metrics) adds its settings. `probabilities`, when the caller already has them for `images`, saves running
    the model again. Returns the report's numbers (what report.json holds)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if probabilities is None:
        probabilities = classifier.predict_proba(images)
    numbers = evaluate.classification_numbers(probabilities, labels, classifier.class_names)
    # Figures get the names escaped (`printable`): matplotlib has no glyph for a control character and says so on
    # stderr, raw, once per character.
    figures = _figures(numbers, [printable(name) for name in classifier.class_names], images, dataset, history)
    for name, draw in figures.items():
        draw(out_dir / name)
    report = {"model": classifier.path, "format": classifier.format, "run": _run_facts(run or {}),
              "data": data_overview(dataset) if dataset is not None else None, **numbers}
    fileio.write_json(out_dir / REPORT_JSON, report)
    fileio.write_text(out_dir / REPORT_HTML, render_html(report, classifier.class_names,
                                                         [out_dir / name for name in figures]))
    return report


def _figures(numbers: dict, class_names, images, dataset, history) -> dict:
    """{file name: draw(path)} of every figure the report has."""
    figures = {
        "confusion_counts.png": lambda path: plot_confusion(numbers, class_names, path, normalise=False),
        "confusion_normalised.png": lambda path: plot_confusion(numbers, class_names, path, normalise=True),
        "reliability.png": lambda path: plot_reliability(numbers["calibration"], path),
        "mistakes.png": lambda path: plot_mistakes(numbers["most_confident_mistakes"], images, path),
    }
    if dataset is not None:
        figures["samples.png"] = lambda path: plot_samples(dataset.x_train, dataset.y_train, class_names, path)
    for metric in ("accuracy", "loss") if history else ():
        figures[f"{metric}.png"] = lambda path, metric=metric: plot_curves(history, metric, path)
    return figures


def _run_facts(metrics: dict) -> dict:
    keys = ("recipe", "seed", "data", "excluded", "model", "train_wall_s", "wall_s", "versions", "test_accuracy")
    return {key: metrics[key] for key in keys if key in metrics}


def data_overview(dataset) -> dict:
    """Class counts per split and the files the loader skipped (JSON-ready)."""
    def counts(labels):
        return {name: int((np.asarray(labels) == index).sum()) for index, name in enumerate(dataset.class_names)}

    return {"source": dataset.source, "test_split": dataset.test_split, "train_counts": counts(dataset.y_train),
            "test_counts": counts(dataset.y_test), "skipped_count": dataset.skipped_count,
            "skipped": dataset.skipped}


def plot_samples(images: np.ndarray, labels: np.ndarray, class_names, path, per_class: int = 8) -> None:
    """A row of the first `per_class` training images of every class, the class name on the left."""
    labels = np.asarray(labels)
    figure, grid = plt.subplots(len(class_names), per_class, figsize=(1.1 * per_class + 1, 1.1 * len(class_names)),
                                dpi=110, squeeze=False)
    for row, name in enumerate(class_names):
        members = np.flatnonzero(labels == row)[:per_class]
        for column, axes in enumerate(grid[row]):
            axes.set_xticks([])
            axes.set_yticks([])
            if column < len(members):
                axes.imshow(images[members[column]].astype(np.uint8), interpolation="nearest")
            else:
                axes.axis("off")
        grid[row][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle("Training images per class", fontsize=9)
    _save(figure, path)


def plot_confusion(numbers: dict, class_names, path, normalise: bool) -> None:
    """Heatmap of the confusion matrix: counts, or each row divided by its class's support."""
    matrix = np.asarray(numbers["confusion_matrix"], np.float64)
    if normalise:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.55 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size), dpi=110)
    image = axes.imshow(matrix, cmap=COLOUR_MAP, vmin=0, vmax=1 if normalise else None)
    figure.colorbar(image, ax=axes, label="share of the true class" if normalise else "images")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    if len(class_names) <= 20:  # numbers in the cells while they still fit
        for (row, column), value in np.ndenumerate(matrix):
            text = f"{value:.2f}" if normalise else f"{int(value)}"
            axes.text(column, row, text, ha="center", va="center", fontsize=7,
                      color="white" if value < 0.6 * matrix.max() else "black")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix (row-normalised)" if normalise else "Confusion matrix (counts)")
    _save(figure, path)


def plot_reliability(calibration: dict, path) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal of perfect calibration."""
    bins = [bin_ for bin_ in calibration["bins"] if bin_["count"]]
    figure, axes = plt.subplots(figsize=(5.5, 5), dpi=110)
    axes.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    width = calibration["bins"][0]["high"] - calibration["bins"][0]["low"]
    axes.bar([bin_["low"] for bin_ in bins], [bin_["accuracy"] for bin_ in bins], width=width, align="edge",
             edgecolor="black", color=plt.get_cmap(COLOUR_MAP)(0.35), label="accuracy in bin")
    axes.plot([bin_["confidence"] for bin_ in bins], [bin_["accuracy"] for bin_ in bins], "o", color="black",
              label="mean confidence in bin")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Reliability (ECE {100 * calibration['expected_calibration_error']:.2f}%)")
    axes.legend(loc="upper left")
    _save(figure, path)


def plot_mistakes(mistakes: list, images: np.ndarray, path, columns: int = 8) -> None:
    """Grid of the most confidently wrong images, each titled true → predicted (confidence)."""
    count = max(len(mistakes), 1)
    rows = (count + columns - 1) // columns
    figure, grid = plt.subplots(rows, columns, figsize=(1.6 * columns, 2.3 * rows + 0.4), dpi=110, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, mistake in zip(grid.flat, mistakes):
        axes.imshow(images[mistake["index"]].astype(np.uint8), interpolation="nearest")
        axes.set_title(printable(f"{mistake['true']}") + "\n→ " + printable(mistake["predicted"])
                       + f" ({100 * mistake['confidence']:.0f}%)", fontsize=7)
    if not mistakes:
        grid.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.suptitle("Most confident mistakes: true → predicted (confidence)", fontsize=9)
    _save(figure, path)


def plot_curves(history: list, metric: str, path) -> None:
    """Train vs validation `metric` over all epochs, with the start of each later phase marked (the seed
    recipe's augmented phase). `history`: per-epoch records (1-based "epoch", "phase", `metric`, `val_<metric>`)."""
    numbers = [record["epoch"] for record in history]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    axes.plot(numbers, [record[metric] for record in history], "o-", label=f"train {metric}")
    if all(f"val_{metric}" in record for record in history):
        axes.plot(numbers, [record[f"val_{metric}"] for record in history], "s--", label=f"validation {metric}")
    for previous, record in zip(history, history[1:]):
        if record["phase"] != previous["phase"]:
            label = "augmentation starts" if record["phase"] == "augmented" else f"{record['phase']} phase starts"
            axes.axvline(record["epoch"] - 0.5, color="grey", linestyle=":", label=label)
    axes.set_title(f"{metric.capitalize()} per epoch")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend()
    _save(figure, path)


def _save(figure, path) -> None:
    with warnings.catch_warnings():
        # A name in a script the font lacks (CJK, emoji) is drawn as boxes; the figure is still right, and a
        # warning per glyph on the user's terminal says nothing they can act on.
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        figure.tight_layout()
        with fileio.atomic_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, format="png")
    plt.close(figure)


def render_html(report: dict, class_names, pictures: list) -> str:
    """One HTML page, styles inline and images as data: URIs; nothing is fetched from anywhere."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{values[key]:.3f}</td>" for key in ("precision", "recall", "f1"))
        + f"<td>{values['support']}</td></tr>" for name, values in report["per_class"].items())
    averages = "".join(
        f"<tr><th>{name} average</th>" + "".join(f"<td>{values[key]:.3f}</td>" for key in ("precision", "recall", "f1"))
        + "<td></td></tr>" for name, values in report["averages"].items())
    images = "".join(
        f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode("ascii")}"><figcaption>{html.escape(path.stem)}</figcaption></figure>'
        for path in pictures)
    summary = (f"top-1 accuracy {100 * report['top1_accuracy']:.2f}%, balanced accuracy (mean recall over the classes) "
               f"{100 * report['balanced_accuracy']:.2f}%, top-3 {100 * report['top3_accuracy']:.2f}%, "
               f"expected calibration error {100 * report['calibration']['expected_calibration_error']:.2f}% "
               f"on {report['count']} images")
    settings = html.escape(json.dumps(report.get("run", {}), indent=2))
    overview = _overview_html(report.get("data")) + _excluded_html((report.get("run") or {}).get("excluded"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imagerec report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.2em .6em;text-align:right}}figure{{display:inline-block;margin:1em}}
img{{max-width:40em}}pre{{background:#eee;padding:1em;overflow:auto}}</style></head>
<body><h1>imagerec report</h1><p>Model {html.escape(str(report['model']))} ({html.escape(report['format'])}): {summary}.</p>
<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{rows}{averages}</table><h2>Figures</h2>{images}{overview}<h2>Run</h2><pre>{settings}</pre></body></html>
"""


def _excluded_html(excluded) -> str:
    """A run trained with `--exclude`: how many files it left out, and why (the doctor's kinds)."""
    if not excluded:
        return ""
    kinds = ", ".join(f"{count} {html.escape(str(kind))}" for kind, count in excluded["by_kind"].items())
    return (f"<h2>Left out</h2><p>{excluded['count']} training file(s) left out, listed in "
            f"{html.escape(str(excluded['file']))} ({kinds or 'none'}; the run directory's excluded.csv names them); "
            f"{excluded['kept_in_test']} listed test file(s) were kept in the test split.</p>")


def _overview_html(overview) -> str:
    if not overview:
        return ""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{count}</td><td>{overview['test_counts'][name]}</td></tr>"
                   for name, count in overview["train_counts"].items())
    skipped = "".join(f"<li>{html.escape(str(item))}</li>" for item in overview["skipped"][:20])
    return (f"<h2>Data</h2><p>{html.escape(str(overview['source']))}; test split: "
            f"{html.escape(str(overview['test_split']))}; {overview['skipped_count']} file(s) skipped.</p>"
            f"<table><tr><th>class</th><th>train</th><th>test</th></tr>{rows}</table>"
            + (f"<ul>{skipped}</ul>" if skipped else ""))
