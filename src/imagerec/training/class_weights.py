"""Per-class loss weights for skewed classes (`class_weight="balanced"`), as every trainer applies them."""

import numpy as np


def class_weights(labels: np.ndarray, num_classes: int, mode: str = "balanced") -> np.ndarray | None:
    """Per-class loss weights (num_classes,) float32 for `mode` "balanced": n / (num_classes * n_class), as
    scikit-learn's compute_class_weight, so that each class weighs the same in total; None for "none"."""
    if mode == "none":
        return None
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=np.asarray(labels))
    return weights.astype(np.float32)

