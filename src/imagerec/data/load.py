"""`load_dataset`: every supported source becomes the same `Dataset` of uint8 images.

Sources: Keras' CIFAR-10 download, an image-folder tree `train/<class>/*` (+ `test/`), a `.tar.gz`/`.tgz`/`.zip`
of such a tree, and the official CIFAR-10 python pickles. CIFAR-10 sources stay 32x32 in memory. Folders are
decoded once at the run's image size (default: from the images, `folders.default_image_size`), on every core,
into uint8 `.npy` files per split that later runs open as memory maps (`cache`). This module only picks the
source, as timm's reader factory does: each source lives in its own module (Keras is imported only for its
download).
"""

import os
from pathlib import Path

from imagerec.data import archives, cache, cifar, folders, splits
from imagerec.data.cifar import KERAS_CIFAR10_LABEL
from imagerec.data.dataset import CIFAR10_IMAGE_SIZE, Dataset, parse_image_size
from imagerec.errors import UserError

DEFAULT_SOURCE = "cifar10"  # Keras' download, when no data is named
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")


def load_dataset(source: str = DEFAULT_SOURCE, image_size=None, val_split: float = 0.2,
                 seed: int = 0, cache_dir=None, progress: bool = True, max_extract_bytes: int | None = None,
                 hold_out_validation: bool = False) -> Dataset:
    """Load a dataset from `source` as uint8 arrays (memory maps for image folders).

    `source` is "cifar10" (Keras download), an image-folder tree with `train/<class>/` and optionally
    `test/<class>/`, an archive (.tar.gz, .tgz, .zip) of such a tree, the official
    `cifar-10-python.tar.gz`, or an extracted `cifar-10-batches-py` folder. `image_size` is N, "N", "HxW" or
    (height, width); None: 32x32 for CIFAR-10 sources, else `default_image_size` of the folder (printed).
    Without a test split, `val_split` of each class (stratified, seeded) becomes the test split;
    `hold_out_validation` then holds out `val_split` of each class of the (remaining) training images as
    `x_val`/`y_val` (`hold_out`), decoded into their own cache file. An archive
    whose members add up to more than `max_extract_bytes` (default: 100x the archive's size) is refused.
    Raises UserError.
    """
    if not str(source).strip():
        raise UserError("`data` is an empty name: give a folder, an archive or 'cifar10'")
    image_size = None if image_size is None else parse_image_size(image_size)
    plan = splits.SplitPlan(val_split, seed, hold_out_validation)
    if max_extract_bytes is not None and not 0 < max_extract_bytes < float("inf"):
        raise UserError(f"`max_extract_bytes` must be a positive size, got {max_extract_bytes}")
    if source in (DEFAULT_SOURCE, KERAS_CIFAR10_LABEL):
        dataset = cifar.load_keras_cifar10(image_size or CIFAR10_IMAGE_SIZE)
    else:
        cache_folder = Path(cache_dir) if cache_dir else cache.default_cache_dir()
        # Absolute: a run records its source, and `report`/`export` find the data again from any folder.
        path = Path(os.path.abspath(Path(source).expanduser()))  # "a/../b" → "b"; symbolic links kept
        dataset = _load_path(path, image_size, cache_folder, progress, max_extract_bytes, plan)
    if dataset.num_classes < 2:
        raise UserError(f"{dataset.source} has {dataset.num_classes} class ({', '.join(dataset.class_names)}); a "
                        f"classifier needs 2 or more: add a folder per class under train/")
    if hold_out_validation and dataset.y_val is None:
        dataset = splits.hold_out(dataset, val_split, seed)
    return dataset


def _load_path(path: Path, image_size, cache: Path, progress: bool, max_extract_bytes: int | None,
               plan: "splits.SplitPlan") -> Dataset:
    if not path.exists():
        raise UserError(f"data path does not exist: {path}")
    if path.is_dir():
        if cifar.is_pickle_folder(path):
            return cifar.load_pickle_folder(path, image_size or CIFAR10_IMAGE_SIZE)
        return folders.load_folder(folders.find_tree_root(path), image_size, cache, progress, str(path), plan)
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise UserError(f"`data` must be a folder or a .tar.gz/.tgz/.zip archive, got {path}")
    if path.name.lower().endswith((".tar.gz", ".tgz")) and cifar.is_pickle_tar(path):
        return cifar.load_pickle_tar(path, image_size or CIFAR10_IMAGE_SIZE, max_extract_bytes)
    extracted = archives.extract_archive(path, cache, max_extract_bytes)
    return folders.load_folder(folders.find_tree_root(extracted), image_size, cache, progress, str(path), plan)
