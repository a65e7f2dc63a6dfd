"""Saving a trained model in every format of the original tutorial (loading them back is `loading`'s).

A run directory gets the model as Keras 3 native, legacy HDF5, weights only and TF SavedModel (the names
are `layout`'s), its model.json and a manifest of their SHA-256. All take raw 0-255 RGB pixels and return
class probabilities. Every file is written atomically; a full disk is one UserError.
"""

import contextlib
import errno
import os
import warnings

from imagerec import backends, fileio
from imagerec.artefacts import layout, manifest, model_info
from imagerec.errors import UserError


def save_model_files(model, run_dir, info: model_info.ModelInfo) -> dict:
    """Write the model in every format under `run_dir`; returns {format: path relative to run_dir}.

    `model` is the inference model (probabilities out); `info` (architecture, test-time views, classes) goes
    to model.json, so the weights-only file can be rebuilt around the same architecture. The SavedModel is
    TensorFlow's own format: on another Keras backend it is left out (`imagerec export --format savedmodel`
    writes it from the .keras file under TensorFlow).
    """
    formats = [name for name in layout.MODEL_FILES if name != "savedmodel" or backends.is_tensorflow()]
    paths = {name: layout.model_path(run_dir, name) for name in formats}
    with _disk_full_is_a_user_error(run_dir):
        _write_formats(model, paths)
        info_path = model_info.write_model_info(run_dir, info)
        manifest.record(run_dir, [*paths.values(), info_path])
    return {**{name: layout.MODEL_FILES[name] for name in formats}, "info": layout.MODEL_INFO_FILE,
            "manifest": layout.MANIFEST_FILE}


def _write_formats(model, paths: dict) -> None:
    with fileio.atomic_path(paths["keras"], suffix=".keras") as temporary:
        model.save(temporary)
    with warnings.catch_warnings(), fileio.atomic_path(paths["h5"], suffix=".h5") as temporary:
        warnings.simplefilter("ignore")  # "HDF5 is legacy": the tutorial's format, written on purpose
        quiet_keras_logging(lambda: model.save(temporary))
    with fileio.atomic_path(paths["weights"], suffix=".weights.h5") as temporary:
        model.save_weights(temporary)
    if "savedmodel" in paths:
        with fileio.atomic_path(paths["savedmodel"]) as temporary:
            model.export(str(temporary), format="tf_saved_model", verbose=False)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` says the disk is full: an OSError's errno, or the text of h5py's and TensorFlow's file
    writers (TensorFlow raises ResourceExhaustedError, h5py an OSError without an errno)."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return any(os.strerror(code) in str(error) for code in DISK_FULL_ERRNOS)


@contextlib.contextmanager
def _disk_full_is_a_user_error(folder):
    try:
        yield
    except Exception as error:  # noqa: BLE001 - any writer's way of saying so; everything else is re-raised
        if not is_disk_full(error):
            raise
        raise UserError(f"no space left on the disk of {folder} while writing the model files; free some and run "
                        f"again") from None


def quiet_keras_logging(action):
    import absl.logging

    previous = absl.logging.get_verbosity()
    absl.logging.set_verbosity(absl.logging.ERROR)
    try:
        return action()
    finally:
        absl.logging.set_verbosity(previous)
