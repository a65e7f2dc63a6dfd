"""Label issues: cleanlab's confident learning (Northcutt et al., JAIR 2021) on out-of-sample probabilities,
one split at a time, ranked by 1 - self-confidence (the probability the models give the label the file has)."""

import numpy as np

from imagerec.diagnosis.findings import Finding

# cleanlab's `find_label_issues(filter_by=...)`: "prune_by_noise_rate" (cleanlab's default) removes, per pair of
# classes, as many images as the confident joint estimates are mislabelled, the least self-confident first.
FILTER_BY = "prune_by_noise_rate"


def label_issue_rows(labels: np.ndarray, probabilities: np.ndarray, filter_by: str = FILTER_BY) -> np.ndarray:
    """Rows whose label cleanlab finds likely wrong, most certain first (lowest self-confidence)."""
    from cleanlab.filter import find_label_issues

    if len(labels) == 0:
        return np.zeros(0, np.int64)
    probabilities = _normalised(probabilities)
    present = np.unique(labels)
    if len(present) < 2:
        return np.zeros(0, np.int64)  # confident learning compares classes: one class has nothing to compare
    rows = find_label_issues(labels, probabilities, filter_by=filter_by, return_indices_ranked_by="self_confidence",
                             n_jobs=1)
    return np.asarray(rows, np.int64)


def label_findings(labels, probabilities, names, split: str, class_names, filter_by: str = FILTER_BY) -> list:
    """A "label" Finding per row of `split` cleanlab flags, with the given and suggested labels."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    findings = []
    for row in label_issue_rows(labels, probabilities, filter_by):
        given, suggested = int(labels[row]), int(probabilities[row].argmax())
        findings.append(Finding(names[row], split, "label", 1.0 - float(probabilities[row, given]),
                                given=class_names[given], suggested=class_names[suggested],
                                detail=f"p(given) {probabilities[row, given]:.3f}, p(suggested) "
                                       f"{probabilities[row, suggested]:.3f}"))
    return findings


def _normalised(probabilities: np.ndarray) -> np.ndarray:
    """Rows that sum to 1 exactly in float64 (cleanlab checks), floored away from 0."""
    probabilities = np.clip(np.asarray(probabilities, np.float64), 1e-12, None)
    return probabilities / probabilities.sum(1, keepdims=True)
