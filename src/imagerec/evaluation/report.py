"""Reports: draw an evaluation's numbers as PNG figures and one self-contained report.html.

Reporting only draws: the numbers come from `evaluate.classification_numbers`, and the training curves from
the history it is given (`train` draws a run's curves here too). Every figure is written as a PNG and
embedded in the HTML as base64, so the page opens offline with no external script, style sheet, font or
image.
"""

import dataclasses
import warnings
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")  # files only, never a window; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402

from imagerec import fileio  # noqa: E402
from imagerec.evaluation import evaluate, report_html  # noqa: E402
from imagerec.errors import UserError, printable  # noqa: E402

REPORT_JSON, REPORT_HTML = "report.json", "report.html"
COLOUR_MAP = "viridis"  # perceptually uniform and monotonic in lightness: reads in grey too


def write_report(out_dir, classifier, images: np.ndarray, labels: np.ndarray, *, dataset=None, history=None,
                 run=None, probabilities=None, robustness=None, explain: bool = True) -> dict:
    """Evaluate `classifier` on uint8 `images`/`labels` and write report.json, the figures and report.html
    into `out_dir` (created if needed). `dataset` (a data.Dataset) adds the data overview: class counts per
    split, skipped files, samples; `history` (per-epoch records) adds the training curves; `run` (a run's
    metrics) adds its settings. `probabilities`, when the caller already has them for `images`, saves running
    the model again. `robustness` (`evaluation.robustness.corruption_accuracy`'s numbers) adds its section;
    `explain`: the mistakes shown beside their Grad-CAM heatmaps when the model has a Keras graph. A model with
    a calibration temperature gets its reliability before and after. Returns the report's numbers (what
    report.json holds)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if probabilities is None:
        probabilities = classifier.predict_proba_selective(images)
    numbers = evaluate.classification_numbers(probabilities, labels, classifier.class_names)
    temperature = _temperature(classifier, run)
    if temperature is not None:
        before = evaluate.apply_temperature(probabilities, 1 / temperature)
        numbers["calibration"]["temperature"] = temperature
        numbers["calibration_before"] = evaluate.calibration_table(before.max(axis=1),
                                                                   before.argmax(axis=1) == np.asarray(labels))
    heatmaps = _mistake_heatmaps(classifier, images, numbers["most_confident_mistakes"]) if explain else None
    # Figures get the names escaped (`printable`): matplotlib has no glyph for a control character and says so on
    # stderr, raw, once per character.
    figures = _figures(numbers, [printable(name) for name in classifier.class_names], images, dataset, history,
                       robustness, heatmaps)
    for figure in figures:
        figure.draw(out_dir / figure.name)
    report = {"model": classifier.path, "format": classifier.format, "run": _run_facts(run or {}),
              "data": data_overview(dataset) if dataset is not None else None, **numbers,
              **({"robustness": robustness} if robustness is not None else {})}
    fileio.write_json(out_dir / REPORT_JSON, report)
    fileio.write_text(out_dir / REPORT_HTML, report_html.render_html(report, figures, out_dir, SECTIONS))
    return report


@dataclasses.dataclass(frozen=True)
class Figure:
    name: str  # its PNG's file name in the report folder
    section: str  # the page's section it appears in (SECTIONS)
    caption: str  # what it shows, in words
    draw: object  # draw(path)
    wide: bool = False  # the page's full width (grids of images, tables); else two to a row


# The page's sections, in the order a user asks: how good, how it learned, where it errs, can its probabilities
# be trusted, how it breaks, what it gets wrong and why, then the data and the run behind it.
SECTIONS = ("Training", "Errors by class", "Calibration", "Robustness", "Mistakes", "Data")


def _figures(numbers: dict, class_names, images, dataset, history, robustness, heatmaps) -> list:
    """Every figure the report has, in page order."""
    validated = bool(history) and all("val_accuracy" in record for record in history)
    figures = [Figure(f"{metric}.png", "Training", f"{metric.capitalize()} per epoch"
                      + (", training and validation" if validated else ", training images"),
                      lambda path, metric=metric: plot_curves(history, metric, path))
               for metric in (("accuracy", "loss") if history else ())]
    figures += [
        Figure("confusion_counts.png", "Errors by class", "Confusion matrix: how many images of each true class "
               "went to each predicted class", lambda path: plot_confusion(numbers, class_names, path, normalise=False)),
        Figure("confusion_normalised.png", "Errors by class", "Confusion matrix as shares of each true class",
               lambda path: plot_confusion(numbers, class_names, path, normalise=True)),
        Figure("reliability.png", "Calibration", "Reliability: how often answers of each confidence are right"
               + (", before and after the temperature" if "calibration_before" in numbers else ""),
               lambda path: plot_reliability(numbers["calibration"], path, numbers.get("calibration_before")),
               wide="calibration_before" in numbers),
    ]
    if robustness is not None:
        figures.append(Figure("robustness.png", "Robustness", "Accuracy on corrupted copies of the test images, "
                              "by corruption and severity", lambda path: plot_robustness(robustness, path)))
    figures.append(Figure("mistakes.png", "Mistakes", "The most confident mistakes: true → predicted (confidence)"
                          + (", each above where the model looked (Grad-CAM)" if heatmaps is not None else ""),
                          lambda path: plot_mistakes(numbers["most_confident_mistakes"], images, path, heatmaps),
                          wide=True))
    if dataset is not None:
        figures.append(Figure("samples.png", "Data", "Training images, the first of each class",
                              lambda path: plot_samples(dataset.x_train, dataset.y_train, class_names, path),
                              wide=True))
    return figures


def _temperature(classifier, run):
    """The calibration temperature inside the model (from its run's metrics, else its Keras graph), or None."""
    recorded = ((run or {}).get("calibration") or {}).get("temperature")
    if recorded is not None:
        return float(recorded)
    if classifier.keras_model is None:
        return None
    from imagerec.models import inference

    return inference.temperature_of(classifier.keras_model)


def _mistake_heatmaps(classifier, images, mistakes):
    """Grad-CAM heatmaps of the shown mistakes, for their predicted class; None for a model without a Keras graph."""
    if classifier.keras_model is None or not mistakes:
        return None
    from imagerec.evaluation import explain

    rows = np.asarray([mistake["index"] for mistake in mistakes])
    predicted = np.asarray([list(classifier.class_names).index(mistake["predicted"]) for mistake in mistakes])
    try:
        maps = explain.heatmaps(explain.explainer(classifier), np.asarray(images)[rows], predicted)
    except UserError:  # a net with no spatial map to explain: the gallery is still worth drawing
        return None
    return {int(row): heatmap for row, heatmap in zip(rows, maps)}


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


def plot_reliability(calibration: dict, path, before: dict | None = None) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal of perfect calibration;
    with `before` (the same table without the temperature), the two side by side."""
    panels = ([(before, "Before calibration")] if before else []) + [
        (calibration, "After calibration" + (f" (T = {calibration['temperature']:.3f})" if before else "")
         if before else "Reliability")]
    figure, grid = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), dpi=110, squeeze=False)
    for axes, (table, title) in zip(grid[0], panels):
        _reliability_panel(axes, table, title)
    _save(figure, path)


def _reliability_panel(axes, calibration: dict, title: str) -> None:
    bins = [bin_ for bin_ in calibration["bins"] if bin_["count"]]
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
    axes.set_title(f"{title}: ECE {100 * calibration['expected_calibration_error']:.2f}%")
    axes.legend(loc="upper left")


def plot_mistakes(mistakes: list, images: np.ndarray, path, heatmaps: dict | None = None, columns: int = 8) -> None:
    """Grid of the most confidently wrong images, each titled true → predicted (confidence); with `heatmaps`
    ({row: heatmap}), each image above its Grad-CAM overlay."""
    from imagerec.evaluation import explain

    count = max(len(mistakes), 1)
    rows = (count + columns - 1) // columns
    per = 2 if heatmaps else 1
    figure, grid = plt.subplots(rows * per, columns, figsize=(2.0 * columns, (2.0 * per + 0.5) * rows + 0.4),
                                dpi=110, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for number, mistake in enumerate(mistakes):
        row, column = divmod(number, columns)
        image = np.asarray(images[mistake["index"]]).astype(np.uint8)
        axes = grid[row * per][column]
        axes.imshow(image, interpolation="nearest")
        axes.set_title(printable(f"{mistake['true']}") + "\n→ " + printable(mistake["predicted"])
                       + f" ({100 * mistake['confidence']:.0f}%)", fontsize=8)
        if heatmaps:
            grid[row * per + 1][column].imshow(explain.overlay(image, heatmaps[mistake["index"]]),
                                               interpolation="nearest")
    if not mistakes:
        grid.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.suptitle("Most confident mistakes: true → predicted (confidence)"
                    + ("; below each, where the model looked" if heatmaps else ""), fontsize=10)
    _save(figure, path)


def plot_robustness(robustness: dict, path) -> None:
    """Heat-table of accuracy per corruption (rows, clean first) and severity (columns), numbers in the cells."""
    names = list(robustness["corruptions"])
    severities = [str(severity) for severity in robustness["severities"]]
    table = np.full((len(names) + 1, len(severities)), np.nan)
    table[0, :] = robustness["clean_accuracy"]
    for row, name in enumerate(names, start=1):
        for column, severity in enumerate(severities):
            table[row, column] = robustness["corruptions"][name]["accuracy"].get(severity, np.nan)
    figure, axes = plt.subplots(figsize=(1.0 * len(severities) + 3.5, 0.36 * len(table) + 1.4), dpi=110)
    image = axes.imshow(100 * table, cmap=COLOUR_MAP, vmin=0, vmax=100, aspect="auto")
    figure.colorbar(image, ax=axes, label="accuracy (%)")
    for (row, column), value in np.ndenumerate(table):
        if np.isfinite(value):
            axes.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                      color="white" if value < 0.6 else "black")
    axes.set_xticks(range(len(severities)), severities)
    axes.set_yticks(range(len(table)), ["clean"] + names)
    axes.set_xlabel("severity")
    mean = robustness["mean_corruption_accuracy"]
    axes.set_title("Accuracy under corruption" + (f": CIFAR-10-C mean {100 * mean:.1f}%" if mean is not None else ""))
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
