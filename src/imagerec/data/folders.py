"""Image-folder trees: `train/<class>/*` (and `test/<class>/*`) listed, split, sized and loaded through the
decode cache. Nothing here decodes a pixel itself (`cache` does, with `images`)."""

import contextlib
import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from imagerec.data import cache, cifar, images, splits
from imagerec.data.dataset import CIFAR10_IMAGE_SIZE, Dataset
from imagerec.errors import UserError

# The image size of a folder when none is given: the median shorter side of a sample of its training images,
# rounded down to a multiple of 16 and kept within these bounds (128 px trains in minutes on 2 CPU cores; ask
# for more with `image_size`).
DEFAULT_SIZE_BOUNDS = (32, 128)
SIZE_SAMPLE = 256  # training images whose headers the default size is read from


def find_tree_root(path: Path) -> Path:
    """The folder holding `train/`: the path itself, or its single top-level folder (archives often add one)."""
    if (path / "train").is_dir():
        return path
    children = [child for child in path.iterdir() if child.is_dir() and not child.name.startswith(".")]
    if len(children) == 1 and (children[0] / "train").is_dir():
        return children[0]
    if len(children) == 1 and cifar.is_pickle_folder(children[0]):
        raise UserError(f"{path} holds CIFAR-10 pickles: pass {children[0]} as `data`")
    raise UserError(f"{path} has no train/ folder: expected train/<class>/*.jpg (and optionally test/<class>/)")


def load_folder(root: Path, image_size, cache_root: Path, progress: bool, label: str,
                plan: splits.SplitPlan) -> Dataset:
    """The tree at `root` as a Dataset of memory maps, decoded at `image_size` (None: `default_image_size`) into
    the cache under `cache_root` the first time, split by `plan` when it has no test/."""
    class_names, listing = list_tree(root)
    if image_size is None:
        image_size = default_image_size(file for file, _ in listing["train"])
        print(f"imagerec: image size {image_size[0]}x{image_size[1]} (from the median shorter side of the training "
              f"images, within {DEFAULT_SIZE_BOUNDS[0]}-{DEFAULT_SIZE_BOUNDS[1]} px; `image_size` sets it)",
              file=sys.stderr)
    test_split = "test"
    cache.check_every_class_present(class_names, np.asarray([label for _, label in listing["train"]], np.int64),
                                    "train", present=True)  # an empty class folder, before the split trips over it
    if "test" not in listing:
        listing = {**listing, **splits.split_listing(listing["train"], plan, "test")}
        test_split = f"val-split {plan.val_split}"
    if plan.hold_out_validation:
        listing = {**listing, **splits.split_listing(listing["train"], plan, "validation")}
    folder = cache_root / "decoded" / _tree_key(root, listing, image_size)
    return cache.decoded(folder, class_names, listing, image_size, progress, label, test_split, root)


def list_tree(root: Path):
    """Class names (sorted train/ sub-folders) and, per split, the files with their class index."""
    class_names = sorted(child.name for child in (root / "train").iterdir()
                         if child.is_dir() and not child.name.startswith("."))
    if not class_names:
        raise UserError(f"{root / 'train'} has no class folders: expected train/<class>/<image files>")
    listing = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        unknown = sorted(child.name for child in (root / split).iterdir()
                         if child.is_dir() and child.name not in class_names and not child.name.startswith("."))
        if unknown:
            raise UserError(f"{root / split} has classes not in train/: {', '.join(unknown[:5])}")
        listing[split] = [(file, index) for index, name in enumerate(class_names)
                          for file in _files_under(root / split / name)]
    return class_names, listing


def _files_under(folder: Path) -> list:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def default_image_size(files) -> tuple:
    """The size a folder trains at when none is given: the median shorter side of up to SIZE_SAMPLE of `files`
    (evenly spread, headers only), rounded down to a multiple of 16, within DEFAULT_SIZE_BOUNDS; square."""
    files = list(files)
    sample = files[::max(1, len(files) // SIZE_SAMPLE)][:SIZE_SAMPLE]
    sides = []
    for file in sample:  # unreadable files are skipped here, and reported when the tree is decoded
        with contextlib.suppress(Exception), Image.open(file, formats=images.IMAGE_FORMATS) as image:
            sides.append(min(image.size))
    if not sides:
        return CIFAR10_IMAGE_SIZE
    low, high = DEFAULT_SIZE_BOUNDS
    side = int(min(max(int(np.median(sides)) // 16 * 16, low), high))
    return side, side


def _tree_key(root: Path, listing: dict, image_size) -> str:
    """The cache key of what is on disk: every file's split, name, class, size and time, and the image size."""
    digest = hashlib.sha256(f"v{cache.CACHE_FORMAT_VERSION}|{root.resolve()}|{image_size}|center-crop".encode())
    for split, files in listing.items():
        for file, label in files:
            status = file.stat()
            digest.update(f"{split}|{file.relative_to(root)}|{label}|{status.st_size}|{status.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]
