"""Predicting image files: find them, decode them, and give each its top-k labels."""

from pathlib import Path

import numpy as np

from imagerec.data import images as image_files
from imagerec.errors import UserError, printable


def find_image_files(paths) -> list:
    """Expand files and folders (recursively, sorted, hidden files left out) into a list of files."""
    files = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"path does not exist: {path}")
        if path.is_dir():
            found = [child for child in sorted(path.rglob("*")) if child.is_file()
                     and not any(part.startswith(".") for part in child.relative_to(path).parts)]
            if not found:
                raise UserError(f"folder has no files: {path}")
            files.extend(found)
        else:
            files.append(path)
    return files


def predict_files(classifier, paths, top_k: int = 5, explain_dir=None):
    """Top-k labels for each image file under `paths`.

    Returns (predictions, errors): predictions is a list of {"path", "top": [{"label", "probability"}]},
    errors a list of {"path", "error"} for files that could not be decoded; one bad file never stops the rest.
    `explain_dir`: also a Grad-CAM overlay PNG and heatmap .npy per image there, of its most probable class
    (each prediction then names them under "explanation" and "heatmap").
    """
    if top_k < 1:
        raise UserError(f"`top_k` must be at least 1, got {top_k}")
    gradcam = None
    if explain_dir is not None:
        from imagerec.evaluation import explain

        gradcam = explain.explainer(classifier)  # a model with no Keras graph fails before any decoding
    images, decoded_paths, errors = [], [], []
    for file in find_image_files(paths):
        try:
            images.append(image_files.decode_image(file, classifier.input_shape[:2]))
            decoded_paths.append(file)
        except image_files.ImageDecodeError as error:
            errors.append({"path": str(file), "error": str(error)})
    if not images:
        return [], errors
    images = np.stack(images)
    probabilities = classifier.predict_proba(images)
    predictions = [{"path": str(path), "top": top_k_labels(row, classifier.class_names, top_k)}
                   for path, row in zip(decoded_paths, probabilities)]
    if gradcam is not None:
        maps = explain.heatmaps(gradcam, images, probabilities.argmax(axis=1))
        predictions = explain.write_explanations(explain_dir, predictions, images, maps)
    return predictions, errors


def top_k_labels(probabilities: np.ndarray, class_names, top_k: int) -> list:
    """[{"label", "probability"}] of the `top_k` most probable classes of one image, best first."""
    order = np.argsort(-probabilities)[:top_k]
    return [{"label": class_names[index], "probability": float(probabilities[index])} for index in order]


def table(predictions: list) -> str:
    """`predict_files`' predictions as text: one line per file, its path then each label and probability.
    Paths and labels come from users' files and models: their control characters are escaped (`printable`)."""
    paths = [printable(item["path"]) for item in predictions]
    width = max(map(len, paths), default=0)
    return "\n".join(f"{path:<{width}}  " + "  ".join(f"{printable(top['label'])} {100 * top['probability']:5.1f}%"
                                                     for top in item["top"]) for path, item in zip(paths, predictions))
