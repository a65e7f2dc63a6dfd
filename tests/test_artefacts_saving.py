"""Saving: every format of the tutorial in a run directory, its manifest, and a full disk as one error."""

import json

import pytest
import tensorflow as tf

from imagerec.artefacts import layout, manifest, model_info, saving
from imagerec.errors import UserError


FORMATS = [layout.KERAS_FILE, layout.H5_FILE, layout.WEIGHTS_FILE, layout.SAVED_MODEL_DIR]


def test_run_directory_has_every_file(seed_run):
    for name in [*FORMATS, "model.json", "metrics.json", "history.json", "history.csv",
                 "accuracy.png", "loss.png"]:
        assert (seed_run / name).exists(), name
    for png in ("accuracy.png", "loss.png"):
        assert (seed_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_directory_manifest_lists_every_model_file(seed_run):
    files = json.loads((seed_run / layout.MANIFEST_FILE).read_text())["files"]
    for name in (layout.KERAS_FILE, layout.H5_FILE, layout.WEIGHTS_FILE, layout.MODEL_INFO_FILE,
                 f"{layout.SAVED_MODEL_DIR}/saved_model.pb"):
        assert files[name] == manifest.sha256_file(seed_run / name)
    assert manifest.check(seed_run / layout.SAVED_MODEL_DIR)[0] == manifest.VERIFIED


def _model_of_about(kilobytes: int):
    import keras

    inputs = keras.Input(shape=(32, 32, 3))
    outputs = keras.layers.Dense(kilobytes * 256 // 3072, activation="softmax")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def test_a_disk_that_fills_during_the_saved_model_is_one_user_error_and_no_temporaries(small_disk):
    # ~240 KB a format: .keras, .h5 and the weights fit on the 1 MiB disk, the SavedModel does not
    model = _model_of_about(240)
    info = model_info.ModelInfo(tuple(f"c{index}" for index in range(model.output_shape[1])), (32, 32, 3))
    with pytest.raises(UserError, match="no space left on the disk"):
        saving.save_model_files(model, small_disk, info)
    assert (small_disk / layout.WEIGHTS_FILE).exists()  # it did get as far as the SavedModel
    assert not [path for path in small_disk.rglob("*") if path.name.startswith(".")]


def test_disk_full_is_recognised_in_every_writers_words():
    assert saving.is_disk_full(OSError(28, "No space left on device"))
    assert saving.is_disk_full(tf.errors.ResourceExhaustedError(None, None, "foo; No space left on device"))
    assert saving.is_disk_full(OSError("Unable to create file (errno = 28, error message = 'No space left on "
                                       "device')"))  # h5py
    assert not saving.is_disk_full(OSError(13, "Permission denied"))
