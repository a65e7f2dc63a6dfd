import json

import numpy as np
import pytest
import tensorflow as tf

from imagerec import data, fileio, saving
from imagerec.errors import UserError

FORMATS = [saving.KERAS_FILE, saving.H5_FILE, saving.WEIGHTS_FILE, saving.SAVED_MODEL_DIR]


def test_run_directory_has_every_file(seed_run):
    for name in [*FORMATS, "model.json", "metrics.json", "history.json", "history.csv",
                 "accuracy.png", "loss.png"]:
        assert (seed_run / name).exists(), name
    for png in ("accuracy.png", "loss.png"):
        assert (seed_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("run_fixture", ["seed_run", "fast_run"])
def test_all_formats_give_the_same_probabilities(run_fixture, cifar_subset, request):
    run_dir = request.getfixturevalue(run_fixture)
    images = data.load_dataset(str(cifar_subset)).x_test[:64]
    probabilities = {name: saving.load_model(run_dir / name).predict_proba(images) for name in FORMATS}
    reference = probabilities[saving.KERAS_FILE]
    assert reference.shape == (64, 10)
    for name, other in probabilities.items():
        assert np.abs(other - reference).max() <= 1e-5, name
    loaded = saving.load_model(run_dir / saving.SAVED_MODEL_DIR)
    assert loaded.class_names == data.load_dataset(str(cifar_subset)).class_names


def test_saved_model_takes_raw_pixels_through_tf_saved_model_load(seed_run, cifar_subset):
    images = data.load_dataset(str(cifar_subset)).x_test[:8].astype(np.float32)
    exported = tf.saved_model.load(str(seed_run / saving.SAVED_MODEL_DIR))
    outputs = exported.serve(tf.constant(images)).numpy()
    keras_outputs = saving.load_model(seed_run / saving.KERAS_FILE).predict_proba(images)
    np.testing.assert_allclose(outputs, keras_outputs, atol=1e-5)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, rtol=1e-5)


def test_run_directory_loads_its_keras_model(seed_run):
    assert saving.load_model(seed_run).format == "keras"


def test_corrupt_model_file_is_a_user_error(tmp_path):
    for name in ("broken.keras", "broken.h5"):
        (tmp_path / name).write_bytes(b"definitely not a model")
        with pytest.raises(UserError, match="cannot load model"):
            saving.load_model(tmp_path / name)


def test_missing_and_unknown_model_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        saving.load_model(tmp_path / "nothing.keras")
    (tmp_path / "model.txt").write_text("hi")
    with pytest.raises(UserError, match="is not a model"):
        saving.load_model(tmp_path / "model.txt")


def test_weights_without_their_run_metadata_are_refused(seed_run, tmp_path):
    alone = tmp_path / "alone.weights.h5"
    alone.write_bytes((seed_run / saving.WEIGHTS_FILE).read_bytes())
    with pytest.raises(UserError, match="model.json"):
        saving.load_model(alone)


def test_model_whose_input_is_not_an_image_is_refused(tmp_path):
    import keras

    inputs = keras.Input(shape=(10,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.save(tmp_path / "vector.keras")
    with pytest.raises(UserError, match="not an image classifier"):
        saving.load_model(tmp_path / "vector.keras")


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "model.json"
    fileio.write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as temporary:
            temporary.write_text('{"version": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"version": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["model.json"]


def test_atomic_directory_replaces_an_existing_one(tmp_path):
    target = tmp_path / "saved_model" / "my_model"
    for version in ("1", "2"):
        with fileio.atomic_path(target) as temporary:
            temporary.mkdir()
            (temporary / "version").write_text(version)
    assert (target / "version").read_text() == "2"
    assert sorted(path.name for path in target.parent.iterdir()) == ["my_model"]
