"""Explanations: where a model looked (Grad-CAM heatmaps, `models.gradcam`) drawn over the image it looked at,
as PNG files, arrays and data URLs for the report, `predict --explain` and the server's `:explain` verb."""

import base64
import io
import re
from pathlib import Path

import numpy as np

from imagerec import fileio
from imagerec.errors import UserError

HEATMAP_COLOURS = "turbo"  # jet's hues (keras-io's Grad-CAM) with even lightness steps
OVERLAY_ALPHA = 0.45  # heat over the image: enough to read both
SHOWN_SIDE = 256  # overlays are drawn at least this many pixels a side: a 32 px image is a speck otherwise


def explainer(classifier):
    """A `models.gradcam.GradCam` for a classifier that has a Keras model (a run directory, .keras, .h5 or
    weights); UserError for the others (a SavedModel, an export), which have no graph to take gradients of."""
    if classifier.keras_model is None:
        raise UserError(f"explanations need a Keras model (a run directory, .keras, .h5 or .weights.h5 file); "
                        f"{classifier.path} is a {classifier.format}")
    from imagerec.models import gradcam

    return gradcam.GradCam(classifier.keras_model)


def heatmaps(gradcam, images: np.ndarray, classes, batch_size: int = 64) -> np.ndarray:
    """(N, H, W) heatmaps for `classes`, a batch at a time (a backbone's gradients at 224 px are large)."""
    classes = np.asarray(classes)
    parts = [gradcam(images[start:start + batch_size], classes[start:start + batch_size])
             for start in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, *images.shape[1:3]), np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3): the heatmap in HEATMAP_COLOURS blended over the image."""
    from matplotlib import colormaps

    heat = colormaps[HEATMAP_COLOURS](np.clip(heatmap, 0, 1))[..., :3] * 255
    blended = (1 - OVERLAY_ALPHA) * np.asarray(image, np.float32) + OVERLAY_ALPHA * heat
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def enlarged(image: np.ndarray, side: int = SHOWN_SIDE) -> np.ndarray:
    """The image scaled up by a whole factor (nearest: pixels stay pixels) until its shorter side reaches `side`."""
    factor = max(1, -(-side // min(image.shape[:2])))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def draw_explanation(image: np.ndarray, heatmap: np.ndarray, top: list, path) -> None:
    """One PNG: the image and the heatmap over it side by side, the top labels underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imagerec.errors import printable

    figure, (left, right) = plt.subplots(1, 2, figsize=(6.4, 3.8), dpi=100)
    for axes, picture, title in ((left, image, "image"), (right, overlay(image, heatmap), "where the model looked")):
        axes.imshow(enlarged(picture), interpolation="nearest")
        axes.set_title(title, fontsize=10)
        axes.axis("off")
    figure.text(0.5, 0.04, "   ".join(f"{printable(item['label'])} {100 * item['probability']:.1f}%" for item in top),
                ha="center", fontsize=10)
    figure.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.12, wspace=0.05)
    with fileio.atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)


def write_explanations(out_dir, predictions: list, images: np.ndarray, heatmaps: np.ndarray) -> list:
    """For each prediction ({"path", "top"}), <name>.png (`draw_explanation`) and <name>.npy (the heatmap) in
    `out_dir`; the predictions returned with "explanation" and "heatmap" naming the files."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"`explain` must be a folder, and {out_dir} is a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = _file_names([item["path"] for item in predictions])
    explained = []
    for item, image, heatmap, name in zip(predictions, images, heatmaps, names):
        picture, array = out_dir / f"{name}.png", out_dir / f"{name}.npy"
        draw_explanation(image, heatmap, item["top"], picture)
        with fileio.atomic_path(array, suffix=".npy") as temporary:
            np.save(temporary, heatmap.astype(np.float32))
        explained.append({**item, "explanation": str(picture), "heatmap": str(array)})
    return explained


def _file_names(paths) -> list:
    """A safe, distinct file stem per input path: its stem (characters outside [A-Za-z0-9._-] as _), numbered
    when two inputs share one (cat/1.jpg and dog/1.jpg)."""
    stems = [re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).stem)[:100] or "image" for path in paths]
    seen, names = {}, []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if stems.count(stem) == 1 else f"{stem}-{seen[stem]}")
    return names
