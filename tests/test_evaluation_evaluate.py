import numpy as np
import pytest

from imagerec.evaluation import evaluate

CLASSES = ("cat", "dog", "frog")


def _probabilities(rows):
    rows = np.asarray(rows, np.float64)
    return rows / rows.sum(axis=1, keepdims=True)


def test_classification_numbers_agree_with_a_direct_count():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    probabilities = _probabilities(rng.random((200, 3)) + 2.0 * np.eye(3)[labels] * rng.random((200, 1)))
    numbers = evaluate.classification_numbers(probabilities, labels, CLASSES)
    matrix = np.asarray(numbers["confusion_matrix"])
    predicted = probabilities.argmax(axis=1)
    assert matrix.sum() == 200 and numbers["count"] == 200
    assert numbers["top1_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert numbers["top1_accuracy"] == pytest.approx((predicted == labels).mean())
    for index, name in enumerate(CLASSES):
        assert matrix[index].sum() == numbers["per_class"][name]["support"] == (labels == index).sum()
        assert numbers["per_class"][name]["recall"] == pytest.approx(matrix[index, index] / matrix[index].sum())
        assert numbers["per_class"][name]["precision"] == pytest.approx(matrix[index, index] / matrix[:, index].sum())
    assert numbers["averages"]["macro"]["f1"] == pytest.approx(np.mean([numbers["per_class"][n]["f1"] for n in CLASSES]))
    assert numbers["top1_accuracy"] <= numbers["top3_accuracy"] == 1.0  # 3 classes: top-3 is always right


def test_calibration_error_is_the_weighted_gap_between_confidence_and_accuracy():
    # Four images at confidence 0.9 with half right, and two at ~0.6 both right.
    probabilities = _probabilities([[0.9, 0.05, 0.05]] * 4 + [[0.6, 0.3, 0.1]] * 2)
    labels = np.array([0, 0, 1, 2, 0, 0])
    calibration = evaluate.classification_numbers(probabilities, labels, CLASSES)["calibration"]
    expected = 4 / 6 * abs(0.5 - 0.9) + 2 / 6 * abs(1.0 - 0.6)
    assert calibration["expected_calibration_error"] == pytest.approx(expected)
    assert sum(bin_["count"] for bin_ in calibration["bins"]) == 6
    assert len(calibration["bins"]) == evaluate.CALIBRATION_BINS


def test_most_confident_mistakes_come_first_and_only_mistakes():
    probabilities = _probabilities([[0.2, 0.7, 0.1], [0.05, 0.9, 0.05], [0.8, 0.1, 0.1], [0.4, 0.1, 0.5]])
    labels = np.array([0, 0, 0, 0])
    mistakes = evaluate.classification_numbers(probabilities, labels, CLASSES, mistakes=2)["most_confident_mistakes"]
    assert [(m["index"], m["true"], m["predicted"]) for m in mistakes] == [(1, "cat", "dog"), (0, "cat", "dog")]
    assert mistakes[0]["confidence"] == pytest.approx(0.9)


def test_top3_accuracy_counts_the_true_class_among_the_three_most_probable():
    rng = np.random.default_rng(1)
    probabilities = _probabilities(rng.random((100, 6)))
    labels = rng.integers(0, 6, 100)
    numbers = evaluate.classification_numbers(probabilities, labels, tuple("abcdef"))
    top3 = np.argsort(-probabilities, axis=1)[:, :3]
    assert numbers["top3_accuracy"] == pytest.approx(np.mean([label in row for label, row in zip(labels, top3)]))
