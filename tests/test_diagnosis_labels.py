"""Label issues: cleanlab's confident learning finds the flipped labels, ranks them, and names the label the
models believe."""

import numpy as np

from imagerec.diagnosis import labels


def _noisy(rng, count=300, classes=3, flipped=9):
    truth = np.arange(count) % classes
    probabilities = np.full((count, classes), 0.05) + np.eye(classes)[truth] * 0.85 + rng.uniform(0, 0.05, (count, classes))
    probabilities /= probabilities.sum(1, keepdims=True)
    given = truth.copy()
    rows = rng.choice(count, flipped, replace=False)
    given[rows] = (truth[rows] + 1) % classes
    return given, probabilities, set(rows.tolist()), truth


def test_flipped_labels_are_found_with_the_believed_label_and_clean_ones_are_not():
    given, probabilities, flipped, truth = _noisy(np.random.default_rng(0))
    names = [f"train/{index}.png" for index in range(len(given))]
    found = labels.label_findings(given, probabilities, names, "train", ("a", "b", "c"))
    assert {names.index(finding.path) for finding in found} == flipped
    for finding in found:
        row = names.index(finding.path)
        assert finding.kind == "label" and finding.split == "train"
        assert finding.given == "abc"[given[row]] and finding.suggested == "abc"[truth[row]]
        assert np.isclose(finding.score, 1 - probabilities[row, given[row]])
    assert [finding.score for finding in found] == sorted((finding.score for finding in found), reverse=True)


def test_a_split_of_one_class_or_none_has_no_label_findings():
    probabilities = np.tile([0.9, 0.1], (5, 1))
    assert labels.label_findings(np.zeros(5, int), probabilities, list("abcde"), "test", ("x", "y")) == []
    assert labels.label_findings(np.zeros(0, int), np.zeros((0, 2)), [], "test", ("x", "y")) == []
