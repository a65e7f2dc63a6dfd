"""The `Dataset` every source becomes (uint8 images and int32 labels per split), and the image size a run
trains at (`parse_image_size`)."""

import dataclasses
import re

import numpy as np

from imagerec.errors import UserError

CIFAR10_IMAGE_SIZE = (32, 32)
# The largest image side a run trains at, and that a saved model may take (model.json, a .keras file's declared
# input, a loaded model's input are all checked against it): 1024 px is 3 MB per uint8 image.
MAX_IMAGE_SIDE = 1024


@dataclasses.dataclass
class Dataset:
    """Images as uint8 arrays of shape (N, height, width, 3) and int32 labels of shape (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    source: str
    skipped_count: int = 0
    skipped: list = dataclasses.field(default_factory=list)  # first few {"path", "reason"}
    test_split: str = "test"  # "test" (given by the source) or "val-split <fraction>"
    x_val: np.ndarray | None = None  # a stratified slice held out of the training images (`hold_out`), or None
    y_val: np.ndarray | None = None
    # Each row's file, relative to the tree's root (posix), per split ("train", "test", "validation"); None for
    # sources without files (CIFAR-10's download and pickles), whose rows are named by index (`row_names`).
    paths: dict | None = None
    root: str | None = None  # the folder the paths are relative to (an archive's extracted tree)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def split_arrays(self, split: str) -> tuple:
        """(images, labels) of "train", "test" or "validation" (None, None when there is no such split)."""
        return {"train": (self.x_train, self.y_train), "test": (self.x_test, self.y_test),
                "validation": (self.x_val, self.y_val)}[split]

    def row_names(self, split: str) -> list:
        """What names each row of `split`: its file relative to the data's root ("train/cat/0001.jpg"), or
        "train#41" (the row's index) for a source without files."""
        labels = self.split_arrays(split)[1]
        count = 0 if labels is None else len(labels)
        if self.paths is not None and split in self.paths:
            return list(self.paths[split])
        return [f"{split}#{index}" for index in range(count)]

    def with_train_rows(self, rows) -> "Dataset":
        """This dataset with only `rows` of its training split (in memory; its files' paths follow)."""
        rows = np.asarray(rows)
        paths = self.paths
        if paths is not None and "train" in paths:
            paths = {**paths, "train": tuple(np.asarray(paths["train"], object)[rows])}
        return dataclasses.replace(self, x_train=self.x_train[rows], y_train=np.asarray(self.y_train)[rows],
                                   paths=paths)

    def summary(self) -> dict:
        """What a run records about its data (JSON-ready)."""
        return {
            "source": self.source,
            "class_names": list(self.class_names),
            "train_count": int(len(self.y_train)),
            "test_count": int(len(self.y_test)),
            "test_split": self.test_split,
            "validation_count": 0 if self.y_val is None else int(len(self.y_val)),
            "image_shape": list(self.image_shape),
            "skipped_count": self.skipped_count,
            "skipped": self.skipped,
        }


def parse_image_size(image_size) -> tuple:
    """(height, width) from N, "N", "HxW" or a pair; UserError unless both are whole numbers from 8 to
    MAX_IMAGE_SIDE."""
    if isinstance(image_size, str):
        match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", image_size)
        if not match:
            raise UserError(f"`image_size` is N or HxW in pixels (e.g. 128 or 96x128), got {image_size!r}")
        image_size = (int(match.group(1)), int(match.group(2) or match.group(1)))
    elif isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (int(image_size), int(image_size))
    try:
        height, width = (int(side) for side in image_size)
        if (height, width) != tuple(image_size):
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"`image_size` is N or HxW in pixels (e.g. 128 or 96x128), got {image_size!r}") from None
    if not (8 <= height <= MAX_IMAGE_SIDE and 8 <= width <= MAX_IMAGE_SIDE):
        raise UserError(f"`image_size` sides must be from 8 to {MAX_IMAGE_SIDE} pixels, got {height}x{width}")
    return height, width

