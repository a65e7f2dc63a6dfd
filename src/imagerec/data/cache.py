"""The decode cache: a folder tree decoded once, on every core, into uint8 `.npy` files per split that later
runs open as memory maps, so memory does not grow with the data set. Keyed by what is on disk, the size and
the split (`folders`); written under a temporary name and renamed, so an interrupted decode leaves nothing a
later run could read."""

import concurrent.futures
import contextlib
import errno
import json
import os
import sys
from pathlib import Path

import numpy as np

from imagerec import fileio
from imagerec.data import images
from imagerec.data.dataset import Dataset
from imagerec.data.progress import Progress
from imagerec.errors import UserError, printable, size_text

# bump when decoding changes, so old caches are not reused (2: JPEG draft; 3: .npy memory maps, center crop;
# 4: each row's file in paths.json)
CACHE_FORMAT_VERSION = 4
PATHS_FILE = "paths.json"  # {split: [each row's file relative to the tree's root]}
MAX_SKIPPED_LISTED = 20  # how many skipped files a Dataset keeps by name
DECODE_CHUNK = 512  # images decoded per round of the thread pool, then written to the cache file
DECODE_WORKERS = None  # decoding threads; None: one per core (benchmarks/large_images.py compares)


def default_cache_dir() -> Path:
    """$IMAGEREC_CACHE, else ~/.cache/imagerec: decoded arrays and extracted archives."""
    return Path(os.environ.get("IMAGEREC_CACHE", Path.home() / ".cache" / "imagerec"))


def decoded(folder: Path, class_names, listing: dict, image_size, progress: bool, label: str,
            test_split: str, root: Path) -> Dataset:
    """The Dataset cached in `folder`, decoded there from `listing` ({split: [(file, class index)]}, files under
    `root`) first when it is not yet (or is unreadable). UserError when the disk fills, with nothing left
    behind."""
    if folder.is_dir():
        with contextlib.suppress(OSError, ValueError, KeyError):  # unreadable: decode again and replace it
            return _read_cache(folder, label, test_split, root)
    try:
        with fileio.atomic_path(folder) as temporary:  # on any error the partial folder is removed
            temporary.mkdir()
            _decode_tree(temporary, class_names, listing, image_size, progress, label, root)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        raise UserError(f"no space left for the decoded images in {folder.parent.parent} ({error.strerror}; the "
                        f"first run of a data set needs {size_text(_cache_bytes(listing, image_size))}): free some, "
                        f"or choose another `cache_dir`") from None
    return _read_cache(folder, label, test_split, root)


def _cache_bytes(splits: dict, image_size) -> int:
    return sum(len(files) for files in splits.values()) * image_size[0] * image_size[1] * 3


def _decode_tree(folder: Path, class_names, splits, image_size, progress: bool, label: str, root: Path) -> None:
    """Decode every split into `folder`: x_<split>.npy (uint8, N x H x W x 3), y_<split>.npy, meta.json and
    paths.json (each row's file)."""
    skipped, paths = [], {}
    meter = Progress(sum(len(files) for files in splits.values()), f"decoding {label}", progress)
    workers = DECODE_WORKERS or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
        for split in ("train", "test", "validation"):
            if split == "validation" and split not in splits:
                continue
            files = splits.get(split, [])
            before = {item["path"] for item in skipped}
            labels = _decode_split(pool, files, folder / f"x_{split}.npy", image_size, skipped, meter)
            dropped = {item["path"] for item in skipped} - before
            paths[split] = [file.relative_to(root).as_posix() for file, _ in files if str(file) not in dropped]
            np.save(folder / f"y_{split}.npy", labels)
            check_every_class_present(class_names, labels, split, present=split in splits)
    _warn_skipped(skipped)
    meta = {"class_names": list(class_names), "skipped_count": len(skipped), "skipped": skipped[:MAX_SKIPPED_LISTED]}
    fileio.write_json(folder / "meta.json", meta)
    fileio.write_json(folder / PATHS_FILE, paths)


def _decode_split(pool, files: list, path: Path, image_size, skipped: list, meter) -> np.ndarray:
    """Decode `files` into the .npy at `path`, DECODE_CHUNK at a time, and return the labels of those read.

    Each chunk is written through a fresh memory map that is closed again, so written pages leave this
    process's memory: peak memory is one chunk, whatever the data set's size."""
    _new_rows(path, (len(files), *image_size, 3))
    labels, written = [], 0
    for start in range(0, len(files), DECODE_CHUNK):
        chunk = files[start:start + DECODE_CHUNK]
        decoded = list(pool.map(lambda item: _decode_or_reason(item[0], image_size), chunk))
        pixels = [image for image in decoded if not isinstance(image, str)]
        skipped.extend({"path": str(file), "reason": image} for (file, _), image in zip(chunk, decoded)
                       if isinstance(image, str))
        labels.extend(label for (_, label), image in zip(chunk, decoded) if not isinstance(image, str))
        if pixels:
            rows = np.lib.format.open_memmap(path, mode="r+")
            rows[written:written + len(pixels)] = np.stack(pixels)
            rows.flush()
            del rows
        written += len(pixels)
        meter.advance(len(chunk))
    if written < len(files):
        _truncate_rows(path, written)
    return np.asarray(labels, np.int32)


def _new_rows(path: Path, shape) -> None:
    """An .npy of zeros (uint8, `shape`) at `path` with its space reserved on disk. A memory map of a sparse file
    dies of SIGBUS ("Bus error", nothing said) when a page cannot be backed on a full disk; reserving the space
    first fails with ENOSPC instead, which can be said."""
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape).flush()
    with open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)


def _decode_or_reason(file: Path, image_size):
    try:
        return images.decode_image(file, image_size)
    except images.ImageDecodeError as error:
        return str(error)


def _truncate_rows(path: Path, count: int) -> None:
    """Keep the first `count` rows of the .npy at `path` (skipped files left unused rows at its end)."""
    full = np.load(path, mmap_mode="r")
    shorter = path.with_name(path.name + ".part")
    _new_rows(shorter, (count, *full.shape[1:]))
    rows = np.lib.format.open_memmap(shorter, mode="r+")
    for start in range(0, count, DECODE_CHUNK):
        stop = min(start + DECODE_CHUNK, count)
        rows[start:stop] = full[start:stop]
    rows.flush()
    del rows, full
    os.replace(shorter, path)


def check_every_class_present(class_names, labels, split, present: bool) -> None:
    """UserError for a split (when `present`) with no readable image, or a train/ class with none."""
    if not present:
        return
    if len(labels) == 0:
        raise UserError(f"no readable images in {split}/")
    counts = np.bincount(labels, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if split == "train" and empty:
        raise UserError(f"class folder(s) with no readable images in train/: {', '.join(empty[:5])}")


def _warn_skipped(skipped: list) -> None:
    if not skipped:
        return
    listed = "; ".join(f"{item['path']} ({item['reason']})" for item in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    print(printable(f"imagerec: warning: skipped {len(skipped)} unreadable file(s): {listed}{more}"), file=sys.stderr)


def _read_cache(folder: Path, label: str, test_split: str, root: Path) -> Dataset:
    """The decoded tree in `folder`: images as read-only memory maps, labels and each row's file in memory."""
    meta = json.loads((folder / "meta.json").read_text())
    paths = {split: tuple(names) for split, names in json.loads((folder / PATHS_FILE).read_text()).items()}
    splits = {split: (np.load(folder / f"x_{split}.npy", mmap_mode="r", allow_pickle=False),
                      np.load(folder / f"y_{split}.npy", allow_pickle=False))
              for split in ("train", "test", "validation") if (folder / f"y_{split}.npy").is_file()}
    return Dataset(*splits["train"], *splits["test"], tuple(meta["class_names"]), source=label,
                   skipped_count=meta["skipped_count"], skipped=meta["skipped"], test_split=test_split,
                   x_val=splits.get("validation", (None, None))[0], y_val=splits.get("validation", (None, None))[1],
                   paths=paths, root=str(root))


