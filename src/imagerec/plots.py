"""Training curves as PNG files (drawing only: the numbers come from train's history)."""

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only, never a window; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402

from imagerec import fileio  # noqa: E402


def plot_curves(epochs: list, metric: str, path) -> None:
    """Train vs validation `metric` over all epochs, with the start of each later phase marked
    (the seed recipe's augmented phase).

    `epochs` is history.json's list of per-epoch records (1-based "epoch", "phase", `metric`, `val_<metric>`).
    """
    numbers = [record["epoch"] for record in epochs]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    axes.plot(numbers, [record[metric] for record in epochs], "o-", label=f"train {metric}")
    if all(f"val_{metric}" in record for record in epochs):
        axes.plot(numbers, [record[f"val_{metric}"] for record in epochs], "s--", label=f"validation {metric}")
    for previous, record in zip(epochs, epochs[1:]):
        if record["phase"] != previous["phase"]:
            label = "augmentation starts" if record["phase"] == "augmented" else f"{record['phase']} phase starts"
            axes.axvline(record["epoch"] - 0.5, color="grey", linestyle=":", label=label)
    axes.set_title(f"{metric.capitalize()} per epoch")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with fileio.atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
