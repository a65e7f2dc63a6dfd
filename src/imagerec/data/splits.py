"""Splits: stratified, seeded rows of each class taken for a test or validation split, and the seed they take."""

import dataclasses

import numpy as np

from imagerec.errors import UserError


def check_seed(seed) -> None:
    """UserError unless `seed` is a whole number that NumPy and TensorFlow both take (0 to 2**32 - 1): the seed
    of the splits here, and of a training run's shuffles and initial weights."""
    if isinstance(seed, bool) or not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**32):
        raise UserError(f"`seed` must be a whole number from 0 to {2**32 - 1}, got {seed!r}")


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """How a source without a given split is split: `val_split` of each class (stratified, by `seed`) becomes
    the test split, and with `hold_out_validation` as much again of the rest the validation split."""

    val_split: float = 0.2
    seed: int = 0
    hold_out_validation: bool = False

    def __post_init__(self):
        if not 0 < self.val_split < 1:
            raise UserError(f"`val_split` must be between 0 and 1 (exclusive), got {self.val_split}")
        check_seed(self.seed)


def split_listing(files: list, plan: SplitPlan, split: str) -> dict:
    """{"train": ..., split: ...}: `plan.val_split` of each class's files (stratified, seeded) become `split` (the
    test split of a tree without test/, or the validation split), chosen from the listing so that each split is
    decoded straight into its own cache file."""
    kept, taken = stratified_rows(np.asarray([label for _, label in files]), plan.val_split, plan.seed, split)
    return {"train": [files[row] for row in kept], split: [files[row] for row in taken]}


def stratified_rows(labels: np.ndarray, fraction: float, seed: int, split: str) -> tuple:
    """(rows kept, rows taken), each sorted: `fraction` of each class's rows of `labels` taken for `split`
    (scikit-learn's stratified train_test_split, seeded). UserError when a class is too small to split."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels)
    if counts.min() < 2:
        raise UserError(f"cannot split off a {split} set with `val_split` {fraction}: a class has {counts.min()} "
                        f"image; give every class 2 or more" + (", or add a test/ folder" if split == "test" else ""))
    try:
        kept, taken = train_test_split(np.arange(len(labels)), test_size=fraction, random_state=seed, stratify=labels)
    except ValueError as error:
        raise UserError(f"cannot split off a {split} set with `val_split` {fraction}: {error}") from error
    return np.sort(kept), np.sort(taken)


def hold_out(dataset, fraction: float, seed: int):
    """The dataset (a `Dataset`) with `fraction` of each class of its training images (stratified, seeded)
    moved to `x_val`/`y_val`, the per-epoch validation data, so that the test split is looked at once, at the
    end. In memory (a copy of the training images); `load_dataset(hold_out_validation=True)` does it while
    decoding."""
    kept, taken = stratified_rows(dataset.y_train, fraction, seed, "validation")
    paths = dataset.paths
    if paths is not None:
        names = np.asarray(paths["train"], dtype=object)
        paths = {**paths, "train": tuple(names[kept]), "validation": tuple(names[taken])}
    return dataclasses.replace(dataset, x_train=dataset.x_train[kept], y_train=dataset.y_train[kept],
                               x_val=dataset.x_train[taken], y_val=dataset.y_train[taken], paths=paths)
