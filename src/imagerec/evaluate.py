"""Evaluation and prediction: numbers about a model, returned as data (drawing is reporting's job)."""

from pathlib import Path

import numpy as np

from imagerec import data
from imagerec.errors import UserError

CROSS_ENTROPY_EPSILON = 1e-7  # Keras' backend epsilon: the same clipping as the training loss


def evaluate(classifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> dict:
    """Accuracy, mean cross-entropy loss and per-class accuracy of `classifier` on uint8 images.

    Computed from the probabilities alone, so every saved format is scored the same way.
    """
    if len(images) == 0:
        raise UserError("no images to evaluate")
    probabilities = classifier.predict_proba(images, batch_size=batch_size)
    labels = np.asarray(labels).astype(np.int64)
    if labels.max() >= probabilities.shape[1]:
        raise UserError(f"the data has {labels.max() + 1}+ classes but the model predicts {probabilities.shape[1]}")
    predicted = probabilities.argmax(axis=1)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], CROSS_ENTROPY_EPSILON, 1.0)
    per_class = {}
    for index, name in enumerate(classifier.class_names):
        mask = labels == index
        per_class[name] = float((predicted[mask] == index).mean()) if mask.any() else None
    return {"accuracy": float((predicted == labels).mean()), "loss": float(-np.log(picked).mean()),
            "count": int(len(labels)), "per_class_accuracy": per_class}


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


def predict_files(classifier, paths, top_k: int = 5):
    """Top-k labels for each image file under `paths`.

    Returns (predictions, errors): predictions is a list of {"path", "top": [{"label", "probability"}]},
    errors a list of {"path", "error"} for files that could not be decoded; one bad file never stops the rest.
    """
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {top_k}")
    images, decoded_paths, errors = [], [], []
    for file in find_image_files(paths):
        try:
            images.append(data.decode_image(file, classifier.input_shape[:2]))
            decoded_paths.append(file)
        except data.ImageDecodeError as error:
            errors.append({"path": str(file), "error": str(error)})
    if not images:
        return [], errors
    probabilities = classifier.predict_proba(np.stack(images))
    return [{"path": str(path), "top": _top_k(row, classifier.class_names, top_k)}
            for path, row in zip(decoded_paths, probabilities)], errors


def _top_k(probabilities: np.ndarray, class_names, top_k: int) -> list:
    order = np.argsort(-probabilities)[:top_k]
    return [{"label": class_names[index], "probability": float(probabilities[index])} for index in order]
