"""Data: every supported source becomes the same in-memory `Dataset` of uint8 images.

Sources (see `load_dataset`): Keras' CIFAR-10 download, an image-folder tree `train/<class>/*` (+ `test/`),
a `.tar.gz`/`.tgz`/`.zip` of such a tree, and the official CIFAR-10 python pickles. CIFAR-10 sources stay
32x32 in memory. Folders are decoded once at the run's image size (default: from the images, see
`default_image_size`), on every core, into uint8 `.npy` files per split that later runs open as memory maps:
memory does not grow with the data set, and later runs start in seconds. The cache is keyed by what is on
disk, the size and the split; it is written under a temporary name and renamed, so an interrupted decode
leaves nothing a later run could read. Data flows one way from here: arrays → `tf.data` (train) → model.
Nothing in this module knows a model.
"""

import concurrent.futures
import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import os
import pickle
import re
import stat
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imagerec import fileio, jpeg_markers, rundir
from imagerec.errors import UserError, printable

# bump when decoding changes, so old caches are not reused (2: JPEG draft; 3: .npy memory maps, center crop)
CACHE_FORMAT_VERSION = 3
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
# Used only when Keras' downloaded copy does not expose batches.meta; folders and pickles name their own.
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")
MAX_SKIPPED_LISTED = 20  # how many skipped files a Dataset keeps by name
DEFAULT_SOURCE = "cifar10"  # Keras' download, when no data is named
KERAS_CIFAR10_LABEL = "cifar10 (keras.datasets)"  # the source a run records for Keras' download
CIFAR10_IMAGE_SIZE = (32, 32)
# The image size of a folder when none is given: the median shorter side of a sample of its training images,
# rounded down to a multiple of 16 and kept within these bounds (128 px trains in minutes on 2 CPU cores; ask
# for more with `image_size`).
DEFAULT_SIZE_BOUNDS = (32, 128)
SIZE_SAMPLE = 256  # training images whose headers the default size is read from
MAX_IMAGE_SIDE = rundir.MAX_INPUT_SIDE  # the largest side `image_size` takes (1024: 3 MB per uint8 image)
DECODE_CHUNK = 512  # images decoded per round of the thread pool, then written to the cache file
DECODE_WORKERS = None  # decoding threads; None: one per core (benchmarks/large_images.py compares)


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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

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


class ImageDecodeError(UserError):
    """A file that is not a readable image."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose header declares more pixels than the caller allows (checked before decoding)."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("IMAGEREC_CACHE", Path.home() / ".cache" / "imagerec"))


def decode_image(source, image_size=(32, 32), max_pixels: int | None = None) -> np.ndarray:
    """Decode a path, bytes or file object into a uint8 RGB array of shape (height, width, 3).

    Grayscale, palette, CMYK, 16-bit and transparent images become RGB (transparency over white);
    EXIF rotation is applied; then the image is resized so that it covers `image_size` (height, width) and
    its center cropped to it (an image of the same aspect ratio is simply resized; nothing is stretched). A JPEG
    much larger than that is decoded at a reduced scale (1/2, 1/4 or 1/8, still at least `image_size`) first.
    Only IMAGE_FORMATS are opened (Pillow's plugins for some others, ICO and ICNS, decode while opening).
    Raises ImageTooLargeError when the header declares more than `max_pixels` (default: Pillow's
    decompression-bomb limit), or a JPEG more than MAX_JPEG_SCANS scans, before any pixel is decoded, and
    ImageDecodeError for anything Pillow cannot fully decode (truncated, not an image).
    """
    with _opened(source, image_size, max_pixels) as (image, _):
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
            height, width = image_size
            if rgb.size != (width, height):
                # ImageOps.fit: crop to the target's aspect ratio around the center, then resize (bilinear).
                rgb = ImageOps.fit(rgb, (width, height), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
        # Untrusted files fail in many ways (OSError, SyntaxError, struct.error...).
        except Exception as error:  # noqa: BLE001
            raise ImageDecodeError(_describe_decode_error(error)) from error


def decode_work(source, image_size=(32, 32), max_pixels: int | None = None) -> int:
    """The work `decode_image` would do, in pixels decoded, read from the header and markers only.

    A server sums it over a request to bound that work before decoding anything. Most formats: width x
    height. A JPEG: the pixels at the reduced scale it is decoded at, plus an eighth of its full size for each
    scan, since libjpeg reads every scan's coefficients at full size (measured here: ~1 ns per full-size pixel
    and scan, against ~8 ns per pixel decoded). Raises as `decode_image` does for a header over `max_pixels`,
    a scan bomb or an unreadable file.
    """
    with _opened(source, image_size, max_pixels) as (image, jpeg):
        scans_work = 0 if jpeg is None else jpeg.width * jpeg.height * jpeg.scans // 8
        return image.width * image.height + scans_work


# The formats imagerec opens: what cameras, phones, screenshots and data sets use. Pillow's ICO and ICNS
# plugins decode the largest embedded image while "opening" (before any size check), others are rare enough
# to be more risk than use. (Pillow's JPEG plugin also opens phones' MPO files, as format "MPO".)
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM")
# libjpeg-turbo's `djpeg -maxscans` idea: a progressive JPEG has about 10 scans (Pillow's, libjpeg's default
# script) and rarely more than 20; 1,000 repeated scans are an attack (each one costs a full-size pass).
MAX_JPEG_SCANS = 100


@contextlib.contextmanager
def _opened(source, image_size, max_pixels):
    """(image with only its header read, its JpegStructure or None): checked against `max_pixels`, a JPEG
    checked for scan bombs and truncation, and set to decode reduced."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        image = Image.open(source, formats=IMAGE_FORMATS)  # the header only (and warns above ~89 Mpixels)
    except Image.DecompressionBombError as error:  # over twice Pillow's own limit, refused at open
        raise ImageTooLargeError(_describe_decode_error(error)) from error
    except Exception as error:  # noqa: BLE001
        raise ImageDecodeError(_describe_decode_error(error)) from error
    with image:
        _check_pixel_count(image, max_pixels)
        jpeg = None
        if image.format in ("JPEG", "MPO"):
            jpeg = _checked_jpeg(image)
            # libjpeg scales while decoding (DCT scaling): decoding a 4000x3000 photo for a 32x32 model at 1/8
            # costs 1/64 of the full decode. The side is the larger of the two, since EXIF may rotate it.
            side = max(image_size)
            try:
                image.draft(None, (side, side))
            except Exception as error:  # noqa: BLE001
                raise ImageDecodeError(_describe_decode_error(error)) from error
        yield image, jpeg


def _checked_jpeg(image) -> jpeg_markers.JpegStructure:
    """The markers of the JPEG `image` was opened from (read again from its start, its position kept)."""
    position = image.fp.tell()
    try:
        image.fp.seek(0)
        structure = jpeg_markers.read_structure(image.fp.read())
    except (OSError, jpeg_markers.MalformedJpeg) as error:
        raise ImageDecodeError(f"not a well-formed JPEG: {error}") from error
    finally:
        image.fp.seek(position)
    if structure.scans > MAX_JPEG_SCANS:
        raise ImageTooLargeError(f"JPEG has {structure.scans:,} scans, over the limit of {MAX_JPEG_SCANS} (each "
                                 f"one is decoded over the whole image)")
    if structure.looks_truncated:
        raise ImageDecodeError(f"truncated JPEG: {structure.entropy_bytes:,} bytes of image data cannot hold the "
                               f"{structure.width}x{structure.height} its header declares")
    return structure


def _check_pixel_count(image, max_pixels) -> None:
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ImageTooLargeError(f"image is {image.width}x{image.height} = {image.width * image.height:,} pixels, "
                                 f"over the limit of {max_pixels:,}")


def _describe_decode_error(error: Exception) -> str:
    if isinstance(error, Image.UnidentifiedImageError):
        return f"not an image, or not one of {', '.join(IMAGE_FORMATS)}"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's own I;16 → RGB conversion clips at 255; keep the top 8 of 16 bits instead.
        pixels = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        image = Image.fromarray(pixels.astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


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
    if not 0 < val_split < 1:
        raise UserError(f"`val_split` must be between 0 and 1 (exclusive), got {val_split}")
    check_seed(seed)
    if max_extract_bytes is not None and not 0 < max_extract_bytes < float("inf"):
        raise UserError(f"`max_extract_bytes` must be a positive size, got {max_extract_bytes}")
    split = (val_split, seed, hold_out_validation)
    if source in (DEFAULT_SOURCE, KERAS_CIFAR10_LABEL):
        dataset = _load_keras_cifar10(image_size or CIFAR10_IMAGE_SIZE)
    else:
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        # Absolute: a run records its source, and `report`/`export` find the data again from any folder.
        path = Path(os.path.abspath(Path(source).expanduser()))  # "a/../b" → "b"; symbolic links kept
        dataset = _load_path(path, image_size, cache, progress, max_extract_bytes, split)
    if dataset.num_classes < 2:
        raise UserError(f"{dataset.source} has {dataset.num_classes} class ({', '.join(dataset.class_names)}); a "
                        f"classifier needs 2 or more: add a folder per class under train/")
    if hold_out_validation and dataset.y_val is None:
        dataset = hold_out(dataset, val_split, seed)
    return dataset


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


def default_image_size(files) -> tuple:
    """The size a folder trains at when none is given: the median shorter side of up to SIZE_SAMPLE of `files`
    (evenly spread, headers only), rounded down to a multiple of 16, within DEFAULT_SIZE_BOUNDS; square."""
    files = list(files)
    sample = files[::max(1, len(files) // SIZE_SAMPLE)][:SIZE_SAMPLE]
    sides = []
    for file in sample:
        with contextlib.suppress(Exception), Image.open(file, formats=IMAGE_FORMATS) as image:  # unreadable files are skipped later
            sides.append(min(image.size))
    if not sides:
        return CIFAR10_IMAGE_SIZE
    low, high = DEFAULT_SIZE_BOUNDS
    side = int(min(max(int(np.median(sides)) // 16 * 16, low), high))
    return side, side


def check_seed(seed) -> None:
    """UserError unless `seed` is a whole number that NumPy and TensorFlow both take (0 to 2**32 - 1)."""
    if isinstance(seed, bool) or not (isinstance(seed, (int, np.integer)) and 0 <= seed < 2**32):
        raise UserError(f"`seed` must be a whole number from 0 to {2**32 - 1}, got {seed!r}")


def _load_path(path: Path, image_size, cache: Path, progress: bool, max_extract_bytes: int | None,
               split) -> Dataset:
    if not path.exists():
        raise UserError(f"data path does not exist: {path}")
    if path.is_dir():
        if _is_cifar_pickle_folder(path):
            return _load_cifar_pickle_folder(path, image_size or CIFAR10_IMAGE_SIZE)
        return _load_folder_cached(_find_tree_root(path), image_size, cache, progress, str(path), split)
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise UserError(f"`data` must be a folder or a .tar.gz/.tgz/.zip archive, got {path}")
    if path.name.lower().endswith((".tar.gz", ".tgz")) and _is_cifar_pickle_tar(path):
        return _load_cifar_pickle_tar(path, image_size or CIFAR10_IMAGE_SIZE, max_extract_bytes)
    extracted = _extract_archive(path, cache, max_extract_bytes)
    return _load_folder_cached(_find_tree_root(extracted), image_size, cache, progress, str(path), split)


# ---------------------------------------------------------------- Keras' CIFAR-10 download

def _load_keras_cifar10(image_size) -> Dataset:
    import keras  # deferred: importing Keras costs seconds that folder users need not pay

    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # Keras raises a bare Exception for a failed download
        raise UserError(
            f"could not download CIFAR-10 ({str(error).splitlines()[0][:120]}); offline, pass "
            f"`data` PATH (an image folder, an archive or cifar-10-python.tar.gz), or place the official "
            f"cifar-10-python.tar.gz at {keras_home}/datasets/cifar-10-batches-py-target_archive"
        ) from error
    metas = sorted(keras_home.glob("datasets/**/batches.meta"))
    class_names = _read_cifar_meta(metas[0].read_bytes()) if metas else CIFAR10_CLASS_NAMES
    return Dataset(_resize_all(x_train, image_size), y_train.reshape(-1).astype(np.int32),
                   _resize_all(x_test, image_size), y_test.reshape(-1).astype(np.int32),
                   tuple(class_names), source=KERAS_CIFAR10_LABEL)


def _resize_all(images: np.ndarray, image_size) -> np.ndarray:
    if images.shape[1:3] == tuple(image_size):
        return images
    height, width = image_size
    return np.stack([np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
                     for image in images])


# ---------------------------------------------------------------- official CIFAR-10 pickles

class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batches only: pickle runs code, so allow nothing but numpy arrays.

    Written by hand because Keras' own batch loader is private API (keras.src.datasets.cifar).
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how protocol-2 pickles spell bytes; harmless

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch")
        return super().find_class(module, name)


def _unpickle(data: bytes) -> dict:
    try:
        loaded = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001 - a corrupt pickle can fail in any way
        raise UserError(f"corrupt CIFAR-10 batch file: {error}") from error
    if not isinstance(loaded, dict):
        raise UserError("corrupt CIFAR-10 batch file: not a dictionary")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def _read_cifar_meta(data: bytes) -> list:
    names = _unpickle(data).get("label_names")
    if not names:
        raise UserError("batches.meta has no label_names")
    return [name.decode() if isinstance(name, bytes) else str(name) for name in names]


def _read_cifar_batch(data: bytes):
    batch = _unpickle(data)
    try:
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(batch["labels"], dtype=np.int32)
    except (KeyError, ValueError) as error:
        raise UserError(f"corrupt CIFAR-10 batch file: {error}") from error
    return images, labels


def _assemble_cifar(files: dict, image_size, source: str) -> Dataset:
    """`files` maps member base names (data_batch_1..5, test_batch, batches.meta) to bytes."""
    missing = [name for name in ("batches.meta", "test_batch") if name not in files]
    train_names = sorted(name for name in files if name.startswith("data_batch_"))
    if missing or not train_names:
        raise UserError(f"{source} is not a complete CIFAR-10 python archive (missing "
                        f"{', '.join(missing) or 'data_batch_*'})")
    train = [_read_cifar_batch(files[name]) for name in train_names]
    x_test, y_test = _read_cifar_batch(files["test_batch"])
    return Dataset(_resize_all(np.concatenate([images for images, _ in train]), image_size),
                   np.concatenate([labels for _, labels in train]),
                   _resize_all(x_test, image_size), y_test,
                   tuple(_read_cifar_meta(files["batches.meta"])), source=source)


def _is_cifar_pickle_folder(path: Path) -> bool:
    return (path / "batches.meta").is_file() and any(path.glob("data_batch_*"))


def _load_cifar_pickle_folder(path: Path, image_size) -> Dataset:
    files = {child.name: child.read_bytes() for child in path.iterdir()
             if child.name == "batches.meta" or child.name == "test_batch"
             or child.name.startswith("data_batch_")}
    return _assemble_cifar(files, image_size, source=str(path))


def _is_cifar_pickle_tar(path: Path) -> bool:
    with _reading_archive(path), tarfile.open(path, "r:gz") as archive:
        for member in archive:
            return member.name.rstrip("/").split("/")[0] == "cifar-10-batches-py"
    return False


def _load_cifar_pickle_tar(path: Path, image_size, max_extract_bytes: int | None) -> Dataset:
    files = {}
    with _reading_archive(path), tarfile.open(path, "r:gz") as archive:
        wanted = [member for member in archive.getmembers() if member.isfile() and _is_cifar_batch(member.name)]
        _check_expansion(path, sum(member.size for member in wanted), max_extract_bytes)
        for member in wanted:  # tarfile reads exactly the declared size of each member
            files[Path(member.name).name] = archive.extractfile(member).read()
    return _assemble_cifar(files, image_size, source=str(path))


def _is_cifar_batch(member_name: str) -> bool:
    name = Path(member_name).name
    return name in ("batches.meta", "test_batch") or name.startswith("data_batch_")


@contextlib.contextmanager
def _reading_archive(path: Path):
    """Turn the many ways a damaged or mislabelled archive fails into one line."""
    try:
        yield
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot read archive {path}: {reason}") from None


# ---------------------------------------------------------------- archives of image folders

# Images barely compress (JPEG and PNG are compressed already), so an image archive expands about 1-3x; an
# archive bomb expands a thousandfold. Unless max_extract_bytes says otherwise, this ratio is the limit.
EXPANSION_RATIO_LIMIT = 100


def _check_expansion(path: Path, total_bytes: int, max_extract_bytes: int | None) -> None:
    """UserError when the archive's members add up to more than the limit (see EXPANSION_RATIO_LIMIT)."""
    if max_extract_bytes is not None:
        limit, why = max_extract_bytes, "`max_extract_bytes`"
    else:
        limit, why = EXPANSION_RATIO_LIMIT * path.stat().st_size, f"{EXPANSION_RATIO_LIMIT}x the archive's size"
    if total_bytes > limit:
        raise UserError(f"{path} expands to {_size_text(total_bytes)}, over the limit of {_size_text(limit)} "
                        f"({why}); if the archive is genuine, raise `max_extract_bytes`")


def _size_text(size_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} bytes"


def _file_key(path: Path) -> str:
    status = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{status.st_size}|{status.st_mtime_ns}".encode()).hexdigest()[:16]


def _extract_archive(path: Path, cache: Path, max_extract_bytes: int | None = None) -> Path:
    """Extract once into the cache (keyed by path, size, mtime); later calls reuse the folder.

    The members' declared sizes are summed before anything is written, and counted again as each member is
    written (zipfile and tarfile both stop at a member's declared size); over the limit, nothing is left.
    """
    target = cache / "extracted" / f"{path.name}-{_file_key(path)}"
    if target.is_dir():
        return target
    print(printable(f"imagerec: extracting {path} to {target}"), file=sys.stderr)
    with _reading_archive(path), fileio.atomic_path(target) as temporary:
        temporary.mkdir()
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = [(info, info.file_size) for info in archive.infolist()]
                _check_members(path, [(info.filename, _zip_kind(info)) for info in archive.infolist()])
                _extract_counted(path, members, lambda info: archive.extract(info, temporary), max_extract_bytes)
        else:
            with tarfile.open(path, "r:gz") as archive:
                members = [(member, member.size if member.isfile() else 0) for member in archive.getmembers()]
                _check_members(path, [(member.name, _tar_kind(member)) for member, _ in members])
                _extract_counted(path, members, lambda member: archive.extract(member, temporary, filter="data"),
                                 max_extract_bytes)  # the "data" filter: a second guard against odd members
    return target


def _extract_counted(path: Path, members: list, extract, max_extract_bytes: int | None) -> None:
    _check_expansion(path, sum(size for _, size in members), max_extract_bytes)
    written = 0
    for member, size in members:
        extract(member)
        written += size
        _check_expansion(path, written, max_extract_bytes)


# A real image, compressed, is hundreds of bytes at least; 100,000 empty members fit in 472 KB of tar.gz and took
# 129 s and 100,000 inodes to extract. An archive may hold MIN_MEMBERS, or one member per this many bytes.
BYTES_PER_MEMBER = 64
MIN_MEMBERS = 10_000


def _check_members(path: Path, members: list) -> None:
    """UserError for an archive with too many members, or one whose member points outside its folder (an
    absolute path, a '..') or is anything but a file or a folder (a link, a device)."""
    limit = max(MIN_MEMBERS, path.stat().st_size // BYTES_PER_MEMBER)
    if len(members) > limit:
        raise UserError(f"{path} holds {len(members):,} members, over the limit of {limit:,} for an archive of its "
                        f"size (one per {BYTES_PER_MEMBER} bytes): not an archive of images")
    for name, kind in members:
        parts = Path(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
            raise UserError(printable(f"{path} has a member that points outside its folder: {name[:200]}; refusing "
                                      f"to extract it"))
        if kind not in ("file", "folder"):
            raise UserError(printable(f"{path} has a member that is a {kind}: {name[:200]}; image archives hold "
                                      f"files and folders only"))


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "folder"
    return "link" if member.issym() or member.islnk() else "special file"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16  # Unix mode, when a Unix tool wrote the archive (often without its type bits)
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "special file"
    return "folder" if info.is_dir() else "file"


def _find_tree_root(path: Path) -> Path:
    """The folder holding `train/`: the path itself, or its single top-level folder (archives often add one)."""
    if (path / "train").is_dir():
        return path
    children = [child for child in path.iterdir() if child.is_dir() and not child.name.startswith(".")]
    if len(children) == 1 and (children[0] / "train").is_dir():
        return children[0]
    if len(children) == 1 and _is_cifar_pickle_folder(children[0]):
        raise UserError(f"{path} holds CIFAR-10 pickles: pass {children[0]} as `data`")
    raise UserError(f"{path} has no train/ folder: expected train/<class>/*.jpg (and optionally test/<class>/)")


# ---------------------------------------------------------------- image-folder trees

def _list_tree(root: Path):
    """Class names (sorted train/ sub-folders) and, per split, the files with their class index."""
    class_names = sorted(child.name for child in (root / "train").iterdir()
                         if child.is_dir() and not child.name.startswith("."))
    if not class_names:
        raise UserError(f"{root / 'train'} has no class folders: expected train/<class>/<image files>")
    splits = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        unknown = sorted(child.name for child in (root / split).iterdir()
                         if child.is_dir() and child.name not in class_names and not child.name.startswith("."))
        if unknown:
            raise UserError(f"{root / split} has classes not in train/: {', '.join(unknown[:5])}")
        splits[split] = [(file, index) for index, name in enumerate(class_names)
                         for file in _files_under(root / split / name)]
    return class_names, splits


def _files_under(folder: Path) -> list:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def _split_listing(files: list, val_split: float, seed: int, split: str) -> dict:
    """{"train": ..., split: ...}: `val_split` of each class's files (stratified, seeded) become `split` (the test
    split of a tree without test/, or the validation split), chosen from the listing so that each split is
    decoded straight into its own cache file."""
    kept, taken = stratified_rows(np.asarray([label for _, label in files]), val_split, seed, split)
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


def _tree_key(root: Path, splits: dict, image_size) -> str:
    digest = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}|{root.resolve()}|{image_size}|center-crop".encode())
    for split, files in splits.items():
        for file, label in files:
            status = file.stat()
            digest.update(f"{split}|{file.relative_to(root)}|{label}|{status.st_size}|{status.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _load_folder_cached(root: Path, image_size, cache: Path, progress: bool, label: str, split) -> Dataset:
    class_names, splits = _list_tree(root)
    if image_size is None:
        image_size = default_image_size(file for file, _ in splits["train"])
        print(f"imagerec: image size {image_size[0]}x{image_size[1]} (from the median shorter side of the training "
              f"images, within {DEFAULT_SIZE_BOUNDS[0]}-{DEFAULT_SIZE_BOUNDS[1]} px; `image_size` sets it)",
              file=sys.stderr)
    val_split, seed, hold_out_validation = split
    test_split = "test"
    _check_every_class_present(class_names, np.asarray([label for _, label in splits["train"]], np.int64), "train",
                               present=True)  # an empty class folder, before the split trips over it
    if "test" not in splits:
        splits = {**splits, **_split_listing(splits["train"], val_split, seed, "test")}
        test_split = f"val-split {val_split}"
    if hold_out_validation:
        splits = {**splits, **_split_listing(splits["train"], val_split, seed, "validation")}
    cache_folder = cache / "decoded" / _tree_key(root, splits, image_size)
    if cache_folder.is_dir():
        with contextlib.suppress(OSError, ValueError, KeyError):  # unreadable: decode again and replace it
            return _read_cache(cache_folder, label, test_split)
    try:
        with fileio.atomic_path(cache_folder) as temporary:  # on any error the partial folder is removed
            temporary.mkdir()
            _decode_tree(temporary, class_names, splits, image_size, progress, label)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        raise UserError(f"no space left for the decoded images in {cache} ({error.strerror}; the first run of a data "
                        f"set needs {_size_text(_cache_bytes(splits, image_size))}): free some, or choose another "
                        f"`cache_dir`") from None
    return _read_cache(cache_folder, label, test_split)


def _cache_bytes(splits: dict, image_size) -> int:
    return sum(len(files) for files in splits.values()) * image_size[0] * image_size[1] * 3


def _decode_tree(folder: Path, class_names, splits, image_size, progress: bool, label: str) -> None:
    """Decode every split into `folder`: x_<split>.npy (uint8, N x H x W x 3), y_<split>.npy, meta.json."""
    skipped = []
    meter = _Progress(sum(len(files) for files in splits.values()), f"decoding {label}", progress)
    workers = DECODE_WORKERS or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
        for split in ("train", "test", "validation"):
            if split == "validation" and split not in splits:
                continue
            files = splits.get(split, [])
            labels = _decode_split(pool, files, folder / f"x_{split}.npy", image_size, skipped, meter)
            np.save(folder / f"y_{split}.npy", labels)
            _check_every_class_present(class_names, labels, split, present=split in splits)
    _warn_skipped(skipped)
    meta = {"class_names": list(class_names), "skipped_count": len(skipped), "skipped": skipped[:MAX_SKIPPED_LISTED]}
    fileio.write_json(folder / "meta.json", meta)


def _decode_split(pool, files: list, path: Path, image_size, skipped: list, meter) -> np.ndarray:
    """Decode `files` into the .npy at `path`, DECODE_CHUNK at a time, and return the labels of those read.

    Each chunk is written through a fresh memory map that is closed again, so written pages leave this
    process's memory: peak memory is one chunk, whatever the data set's size."""
    _new_rows(path, (len(files), *image_size, 3))
    labels, written = [], 0
    for start in range(0, len(files), DECODE_CHUNK):
        chunk = files[start:start + DECODE_CHUNK]
        decoded = list(pool.map(lambda item: _decode_or_reason(item[0], image_size), chunk))
        images = [image for image in decoded if not isinstance(image, str)]
        skipped.extend({"path": str(file), "reason": image} for (file, _), image in zip(chunk, decoded)
                       if isinstance(image, str))
        labels.extend(label for (_, label), image in zip(chunk, decoded) if not isinstance(image, str))
        if images:
            rows = np.lib.format.open_memmap(path, mode="r+")
            rows[written:written + len(images)] = np.stack(images)
            rows.flush()
            del rows
        written += len(images)
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
        return decode_image(file, image_size)
    except ImageDecodeError as error:
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


class _Progress:
    """A progress line with rate and time left: a bar on a terminal; a line every 10% in logs (a bar
    would fill a log with noise)."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total, self.label, self.enabled = total, printable(label), enabled
        self.done, self.started, self.reported = 0, time.perf_counter(), 0

    def advance(self, count: int) -> None:
        self.done += count
        if not self.enabled or self.total == 0:
            return
        elapsed = time.perf_counter() - self.started
        rate = self.done / max(elapsed, 1e-9)
        status = f"{self.done}/{self.total} files, {rate:.0f}/s, " + (
            f"{elapsed:.0f} s" if self.done >= self.total else f"{(self.total - self.done) / rate:.0f} s left")
        if sys.stderr.isatty():
            filled = 30 * self.done // self.total
            print(f"\r{self.label} [{'=' * filled}{'.' * (30 - filled)}] {status}   ",
                  end="\n" if self.done >= self.total else "", file=sys.stderr, flush=True)
        elif self.done >= self.total or self.done - self.reported >= max(1, self.total // 10):
            self.reported = self.done
            print(f"{self.label}: {status}", file=sys.stderr, flush=True)


def _check_every_class_present(class_names, labels, split, present: bool) -> None:
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


def _read_cache(folder: Path, label: str, test_split: str) -> Dataset:
    """The decoded tree in `folder`: images as read-only memory maps, labels in memory."""
    meta = json.loads((folder / "meta.json").read_text())
    splits = {split: (np.load(folder / f"x_{split}.npy", mmap_mode="r", allow_pickle=False),
                      np.load(folder / f"y_{split}.npy", allow_pickle=False))
              for split in ("train", "test", "validation") if (folder / f"y_{split}.npy").is_file()}
    return Dataset(*splits["train"], *splits["test"], tuple(meta["class_names"]), source=label,
                   skipped_count=meta["skipped_count"], skipped=meta["skipped"], test_split=test_split,
                   x_val=splits.get("validation", (None, None))[0], y_val=splits.get("validation", (None, None))[1])


# ---------------------------------------------------------------- split

def hold_out(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """The dataset with `fraction` of each class of its training images (stratified, seeded) moved to
    `x_val`/`y_val`, the per-epoch validation data, so that the test split is looked at once, at the end.
    In memory (a copy of the training images); `load_dataset(hold_out_validation=True)` does it while decoding."""
    kept, taken = stratified_rows(dataset.y_train, fraction, seed, "validation")
    return dataclasses.replace(dataset, x_train=dataset.x_train[kept], y_train=dataset.y_train[kept],
                               x_val=dataset.x_train[taken], y_val=dataset.y_train[taken])


def class_weights(labels: np.ndarray, num_classes: int, mode: str = "balanced") -> np.ndarray | None:
    """Per-class loss weights (num_classes,) float32 for `mode` "balanced": n / (num_classes * n_class), as
    scikit-learn's compute_class_weight, so that each class weighs the same in total; None for "none"."""
    if mode == "none":
        return None
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=np.asarray(labels))
    return weights.astype(np.float32)
