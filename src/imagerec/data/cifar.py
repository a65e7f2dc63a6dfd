"""CIFAR-10 as Keras downloads it, and the official python pickles (a folder or `cifar-10-python.tar.gz`),
read without running any code from them."""

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from imagerec.data import archives
from imagerec.data.dataset import Dataset
from imagerec.errors import UserError

# Used only when Keras' downloaded copy does not expose batches.meta; folders and pickles name their own.
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")
KERAS_CIFAR10_LABEL = "cifar10 (keras.datasets)"  # the source a run records for Keras' download


# ---------------------------------------------------------------- Keras' CIFAR-10 download

def load_keras_cifar10(image_size) -> Dataset:
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


def is_pickle_folder(path: Path) -> bool:
    return (path / "batches.meta").is_file() and any(path.glob("data_batch_*"))


def load_pickle_folder(path: Path, image_size) -> Dataset:
    files = {child.name: child.read_bytes() for child in path.iterdir()
             if child.name == "batches.meta" or child.name == "test_batch"
             or child.name.startswith("data_batch_")}
    return _assemble_cifar(files, image_size, source=str(path))


def is_pickle_tar(path: Path) -> bool:
    with archives.reading_archive(path), tarfile.open(path, "r:gz") as archive:
        for member in archive:
            return member.name.rstrip("/").split("/")[0] == "cifar-10-batches-py"
    return False


def load_pickle_tar(path: Path, image_size, max_extract_bytes: int | None) -> Dataset:
    files = {}
    with archives.reading_archive(path), tarfile.open(path, "r:gz") as archive:
        wanted = [member for member in archive.getmembers() if member.isfile() and _is_cifar_batch(member.name)]
        archives.check_expansion(path, sum(member.size for member in wanted), max_extract_bytes)
        for member in wanted:  # tarfile reads exactly the declared size of each member
            files[Path(member.name).name] = archive.extractfile(member).read()
    return _assemble_cifar(files, image_size, source=str(path))


def _is_cifar_batch(member_name: str) -> bool:
    name = Path(member_name).name
    return name in ("batches.meta", "test_batch") or name.startswith("data_batch_")

