"""Evaluation: numbers about a model's predictions, returned as data (drawing is reporting's job)."""

import numpy as np

from imagerec.errors import UserError

CROSS_ENTROPY_EPSILON = 1e-7  # Keras' backend epsilon: the same clipping as the training loss


def evaluate(classifier, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> dict:
    """Accuracy, mean cross-entropy loss and per-class accuracy of `classifier` on uint8 images.

    Computed from the probabilities alone, so every saved format is scored the same way; a Keras model with
    test-time views runs them only for the images its plain view is unsure of (`predict_proba_selective`).
    """
    if len(images) == 0:
        raise UserError("no images to evaluate")
    return score(classifier.predict_proba_selective(images, batch_size=batch_size), labels, classifier.class_names)


def score(probabilities: np.ndarray, labels: np.ndarray, class_names) -> dict:
    """`evaluate`'s numbers from probabilities (N, K) already computed."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.max() >= probabilities.shape[1]:
        raise UserError(f"the data has {labels.max() + 1}+ classes but the model predicts {probabilities.shape[1]}")
    predicted = probabilities.argmax(axis=1)
    picked = np.clip(probabilities[np.arange(len(labels)), labels], CROSS_ENTROPY_EPSILON, 1.0)
    per_class = {}
    for index, name in enumerate(class_names):
        mask = labels == index
        per_class[name] = float((predicted[mask] == index).mean()) if mask.any() else None
    present = [value for value in per_class.values() if value is not None]
    return {"accuracy": float((predicted == labels).mean()), "loss": float(-np.log(picked).mean()),
            "count": int(len(labels)), "per_class_accuracy": per_class,
            # the mean of the per-class accuracies (recalls) of the classes present: scikit-learn's balanced accuracy
            "balanced_accuracy": float(np.mean(present)) if present else None}


# ---------------------------------------------------------------- the numbers of an evaluation report

CALIBRATION_BINS = 15  # equal-width confidence bins, the usual choice for expected calibration error


def classification_numbers(probabilities: np.ndarray, labels: np.ndarray, class_names, mistakes: int = 16) -> dict:
    """Everything a report shows about predictions, as plain data (lists and floats, JSON-ready).

    `probabilities` (N, K) float, `labels` (N,) int in [0, K). Returns top-1/top-3 accuracy, the confusion
    matrix (rows: true class, columns: predicted; counts), balanced accuracy (the mean per-class recall, which a
    skewed class balance cannot inflate), per-class precision/recall/F1/support with macro and
    weighted averages (scikit-learn), the reliability table and expected calibration error, and the indices of
    the `mistakes` most confidently wrong images.
    """
    from sklearn import metrics

    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels).astype(np.int64)
    classes = list(range(len(class_names)))
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                             zero_division=0)
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(class_names)}
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = metrics.precision_recall_fscore_support(labels, predicted, labels=classes, average=average,
                                                             zero_division=0)
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    wrong = np.flatnonzero(predicted != labels)
    return {
        "count": int(len(labels)),
        "top1_accuracy": float(metrics.accuracy_score(labels, predicted)),
        # scikit-learn's balanced_accuracy_score, from the recalls at hand (it warns about absent classes)
        "balanced_accuracy": float(recall[support > 0].mean()) if support.any() else None,
        "top3_accuracy": _top_k_accuracy(probabilities, labels, 3),
        "confusion_matrix": metrics.confusion_matrix(labels, predicted, labels=classes).tolist(),
        "per_class": per_class,
        "averages": averages,
        "calibration": calibration_table(confidence, predicted == labels),
        "most_confident_mistakes": [{"index": int(i), "true": class_names[labels[i]],
                                     "predicted": class_names[predicted[i]], "confidence": float(confidence[i])}
                                    for i in wrong[np.argsort(-confidence[wrong], kind="stable")][:mistakes]],
    }


def _top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the k most probable (1.0 when there are k classes or fewer)."""
    from sklearn import metrics

    classes = probabilities.shape[1]
    if k >= classes:
        return 1.0  # scikit-learn warns that this is trivially perfect
    return float(metrics.top_k_accuracy_score(labels, probabilities, k=k, labels=list(range(classes))))


def calibration_table(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Reliability table over equal-width confidence bins and the expected calibration error (ECE): the
    count-weighted mean |accuracy - confidence| of the bins. Written here: scikit-learn's calibration_curve
    covers binary classifiers only."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, CALIBRATION_BINS - 1)
    bins, error = [], 0.0
    for index in range(CALIBRATION_BINS):
        members = which == index
        count = int(members.sum())
        accuracy = float(correct[members].mean()) if count else None
        mean_confidence = float(confidence[members].mean()) if count else None
        if count:
            error += count / len(confidence) * abs(accuracy - mean_confidence)
        bins.append({"low": float(edges[index]), "high": float(edges[index + 1]), "count": count,
                     "accuracy": accuracy, "confidence": mean_confidence})
    return {"expected_calibration_error": float(error), "bins": bins}


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) in NumPy: what a model's Temperature layer does to its probabilities (T = 1/T' undoes
    a temperature T', for the figure of before and after)."""
    scores = np.log(np.maximum(np.asarray(probabilities, np.float64), 1e-30)) / temperature
    scores -= scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
