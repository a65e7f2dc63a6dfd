"""Loading any model format safely: corrupt, foreign, tampered, swapped and code-running models refused."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from imagerec.artefacts import layout, loading, manifest
from imagerec.errors import UserError

FORMATS = [layout.KERAS_FILE, layout.H5_FILE, layout.WEIGHTS_FILE, layout.SAVED_MODEL_DIR]


@pytest.mark.parametrize("run_fixture", ["seed_run", "airbench_run"])
def test_all_formats_give_the_same_probabilities(run_fixture, dataset, request):
    run_dir = request.getfixturevalue(run_fixture)
    images = dataset.x_test[:32]
    probabilities = {name: loading.load_model(run_dir / name).predict_proba(images) for name in FORMATS}
    reference = probabilities[layout.KERAS_FILE]
    assert reference.shape == (32, 4)
    for name, other in probabilities.items():
        assert np.abs(other - reference).max() <= 1e-5, name
    loaded = loading.load_model(run_dir / layout.SAVED_MODEL_DIR)
    assert loaded.class_names == dataset.class_names


def test_saved_model_takes_raw_pixels_through_tf_saved_model_load(seed_run, dataset):
    images = dataset.x_test[:8].astype(np.float32)
    exported = tf.saved_model.load(str(seed_run / layout.SAVED_MODEL_DIR))
    outputs = exported.serve(tf.constant(images)).numpy()
    keras_outputs = loading.load_model(seed_run / layout.KERAS_FILE).predict_proba(images)
    np.testing.assert_allclose(outputs, keras_outputs, atol=1e-5)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, rtol=1e-5)


def test_run_directory_loads_its_keras_model(seed_run):
    assert loading.load_model(seed_run).format == "keras"


def test_corrupt_model_file_is_a_user_error(tmp_path):
    for name in ("broken.keras", "broken.h5"):
        (tmp_path / name).write_bytes(b"definitely not a model")
        with pytest.raises(UserError, match="cannot load model"):
            loading.load_model(tmp_path / name, trust_model=True)
    with pytest.raises(UserError, match="cannot load model"):
        loading.load_model(tmp_path / "broken.keras")  # .keras: opened in safe mode, no manifest needed


def test_missing_and_unknown_model_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        loading.load_model(tmp_path / "nothing.keras")
    (tmp_path / "model.txt").write_text("hi")
    with pytest.raises(UserError, match="is not a model"):
        loading.load_model(tmp_path / "model.txt")


def test_weights_without_their_run_metadata_are_refused(seed_run, tmp_path):
    alone = tmp_path / "alone.weights.h5"
    alone.write_bytes((seed_run / layout.WEIGHTS_FILE).read_bytes())
    with pytest.raises(UserError, match="model.json"):
        loading.load_model(alone)


def test_model_whose_input_is_not_an_image_is_refused(tmp_path):
    import keras

    inputs = keras.Input(shape=(10,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.save(tmp_path / "vector.keras")
    with pytest.raises(UserError, match="not an image classifier"):
        loading.load_model(tmp_path / "vector.keras")


def _code_running_model(marker: Path):
    """A tiny image model whose Lambda layer (a Python lambda, saved as bytecode) creates `marker` when run."""
    import keras

    # Self-contained, as a hostile file's would be: no closure, imports what it needs.
    leave_a_mark = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), t)[1]")
    inputs = keras.Input(shape=(32, 32, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(leave_a_mark)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(features))
    marker.unlink()  # building the model ran the function once
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_model_that_needs_code_is_refused_without_running_it(tmp_path, suffix):
    marker = tmp_path / "marker"
    model = _code_running_model(marker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(tmp_path / f"lambda{suffix}")
    expected = "arbitrary Python code" if suffix == ".keras" else "no imagerec manifest vouches"
    with pytest.raises(UserError, match=expected):
        loading.load_model(tmp_path / f"lambda{suffix}")
    assert not marker.exists()


def test_trust_model_loads_a_model_that_needs_code(tmp_path):
    marker = tmp_path / "marker"
    _code_running_model(marker).save(tmp_path / "lambda.keras")
    classifier = loading.load_model(tmp_path / "lambda.keras", trust_model=True)
    assert classifier.predict_proba(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 10)
    assert marker.exists()  # the user trusted it, and its code ran


def test_foreign_h5_without_a_lambda_is_still_refused_until_trusted(tmp_path):
    import keras

    inputs = keras.Input(shape=(32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(tmp_path / "foreign.h5")
    with pytest.raises(UserError, match="`trust_model=True`"):
        loading.load_model(tmp_path / "foreign.h5")
    assert loading.load_model(tmp_path / "foreign.h5", trust_model=True).format == "h5"


def test_tampered_saved_model_is_refused_without_running_it(seed_run, tmp_path):
    """A SavedModel swapped for one whose graph writes a file when called is refused before loading."""
    run_dir = tmp_path / "run"
    shutil.copytree(seed_run, run_dir)
    marker = tmp_path / "marker"
    target = run_dir / layout.SAVED_MODEL_DIR
    shutil.rmtree(target)
    _hostile_saved_model(target, marker)
    with pytest.raises(UserError, match="changed after imagerec wrote it"):
        loading.load_model(target)
    with pytest.raises(UserError, match="changed after imagerec wrote it"):
        loading.load_model(target).predict_proba(np.zeros((1, 32, 32, 3), np.uint8))
    assert not marker.exists()
    loading.load_model(target, trust_model=True).predict_proba(np.zeros((1, 32, 32, 3), np.uint8))
    assert marker.exists()  # proof the refused model would have run its code


def test_edited_keras_file_in_a_run_is_refused(seed_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(seed_run, run_dir)
    with open(run_dir / layout.KERAS_FILE, "ab") as handle:
        handle.write(b"appended")
    with pytest.raises(UserError, match="does not match its SHA-256"):
        loading.load_model(run_dir)


def test_a_manifest_folders_above_does_not_vouch_for_an_h5(tmp_path):
    import keras

    inputs = keras.Input(shape=(32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    path = tmp_path / "downloads" / "x" / "model.h5"
    path.parent.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    manifest.record(tmp_path / "downloads", [path])  # a manifest two folders up that lists it
    with pytest.raises(UserError, match="no imagerec manifest vouches"):
        loading.load_model(path)
    manifest.record(path.parent, [path])  # beside it, it does vouch
    assert loading.load_model(path).format == "h5"


def _hostile_saved_model(path, marker):
    """A SavedModel whose serving signature writes `marker` when called."""
    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        def serve(self, images):
            tf.io.write_file(str(marker), "graph ops ran")
            return {"output_0": tf.ones([tf.shape(images)[0], 10]) / 10}

    hostile = Hostile()
    tf.saved_model.save(hostile, str(path), signatures={"serving_default": hostile.serve})


@pytest.mark.parametrize("swap", ["symlink", "folder"])
def test_a_model_swapped_between_check_and_load_is_never_run(swap, seed_run, tmp_path, monkeypatch):
    """The check and the load must read the same bytes: swap the target when the loader opens it."""
    run_dir = tmp_path / "run"
    shutil.copytree(seed_run, run_dir)
    checked = run_dir / layout.SAVED_MODEL_DIR
    marker, hostile = tmp_path / "marker", tmp_path / "hostile"
    _hostile_saved_model(hostile, marker)
    if swap == "symlink":
        path = tmp_path / "link"
        path.symlink_to(checked)

        def do_swap():
            path.unlink()
            path.symlink_to(hostile)
    else:
        path = checked

        def do_swap():
            checked.rename(checked.with_name("checked"))
            hostile.rename(checked)

    real_load = tf.saved_model.load

    def swapping_load(export_dir, *args, **kwargs):  # between the check and the load
        do_swap()
        return real_load(export_dir, *args, **kwargs)

    monkeypatch.setattr(tf.saved_model, "load", swapping_load)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    probabilities = loading.load_model(path).predict_proba(images)
    assert not marker.exists()
    monkeypatch.setattr(tf.saved_model, "load", real_load)
    expected = loading.load_model(run_dir / layout.KERAS_FILE).predict_proba(images)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)  # the checked model, not the hostile one


def test_an_hdf5_file_behind_a_model_keras_symlink_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _code_running_model(marker).save(tmp_path / "plain.h5")
    hdf5 = tmp_path / "plain.h5"
    hdf5.write_bytes(hdf5.read_bytes() + b"PK\x05\x06" + b"\0" * 18)  # an empty zip's end record: is_zipfile says yes
    link = tmp_path / "link" / "model.keras"
    link.parent.mkdir()
    link.symlink_to(hdf5)
    with pytest.raises(UserError, match="not a .keras file.*HDF5"):
        loading.load_model(link)
    assert not marker.exists()


def _run_copy(run_dir: Path, folder: Path, names) -> Path:
    folder.mkdir()
    for name in names:
        shutil.copy(run_dir / name, folder / name)
    return folder


def test_edited_class_names_in_a_runs_model_json_are_refused(seed_run, tmp_path):
    run = _run_copy(seed_run, tmp_path / "run", [layout.KERAS_FILE, layout.MODEL_INFO_FILE, layout.MANIFEST_FILE])
    info = json.loads((run / layout.MODEL_INFO_FILE).read_text())
    (run / layout.MODEL_INFO_FILE).write_text(json.dumps({**info, "class_names": ["a", "b", "c", "d"]}))
    with pytest.raises(UserError, match="model.json .*changed after imagerec wrote it"):
        loading.load_model(run / layout.KERAS_FILE)
    assert loading.load_model(run / layout.KERAS_FILE, trust_model=True).class_names == ("a", "b", "c", "d")


@pytest.mark.parametrize("edit", [{"input_shape": "abc"}, {"input_shape": [-1, 32, 3]}, {"input_shape": [0, 0, 3]},
                                  {"class_names": []}, {"input_shape": [32, 32]}])
def test_a_damaged_model_json_beside_weights_is_one_error(seed_run, tmp_path, edit):
    run = _run_copy(seed_run, tmp_path / "weights", [layout.WEIGHTS_FILE, layout.MODEL_INFO_FILE])
    info = json.loads((run / layout.MODEL_INFO_FILE).read_text())
    (run / layout.MODEL_INFO_FILE).write_text(json.dumps({**info, **edit}))
    with pytest.raises(UserError, match="model.json is damaged"):
        loading.load_model(run / layout.WEIGHTS_FILE)
