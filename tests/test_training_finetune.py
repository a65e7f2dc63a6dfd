import json

import keras
import numpy as np
import pytest

from helpers import run_cli
from imagerec import data, models
from imagerec.artefacts import loading
from imagerec.training import finetune, recipes, run, warmstart
from imagerec.errors import UserError


@pytest.fixture(scope="module")
def photos(photo_folder, tmp_path_factory):
    return data.load_dataset(str(photo_folder), image_size=48, cache_dir=tmp_path_factory.mktemp("cache"),
                             progress=False)


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """Weights of the mobilenet_v3_small backbone, saved by the test (as a user's own .weights.h5 would be)."""
    keras.utils.set_random_seed(7)
    path = tmp_path_factory.mktemp("weights") / "mobilenet.weights.h5"
    models.build_backbone("mobilenet_v3_small", (48, 48, 3)).save_weights(str(path))
    return path


class BackboneAfterEachEpoch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append([np.array(w) for w in self.model.get_layer(models.BACKBONE_LAYER).get_weights()])


def test_phase_one_trains_the_head_only_and_phase_two_the_top_without_batch_norm(photos, backbone_file, tmp_path):
    recipe = recipes.get_recipe("finetune", epochs=2, head_epochs=1, batch_size=16, unfreeze_layers=12,
                                finetune_learning_rate=1e-3)
    snapshots = BackboneAfterEachEpoch()
    result = run.train(photos, recipe, tmp_path / "run", weights=str(backbone_file), callbacks=[snapshots],
                         verbose=0, report=False)
    start = models.build_backbone("mobilenet_v3_small", (48, 48, 3))
    start.load_weights(str(backbone_file))
    after_head, after_finetune = snapshots.snapshots
    for before, after in zip(start.get_weights(), after_head):  # phase 1: the backbone is frozen
        np.testing.assert_array_equal(before, after)
    backbone = loading.load_model(tmp_path / "run").keras_model.get_layer(models.BACKBONE_LAYER)
    changed = {layer.name for layer in backbone.layers if layer.weights and not all(
        np.array_equal(now, then) for now, then in zip(layer.get_weights(), start.get_layer(layer.name).get_weights()))}
    top = {layer.name for layer in backbone.layers[-12:] if layer.trainable_weights or isinstance(
        layer, keras.layers.Conv2D)}
    assert changed and changed <= top  # phase 2: only the top 12 layers moved ...
    assert not any(isinstance(backbone.get_layer(name), keras.layers.BatchNormalization) for name in changed)  # ... not BN
    assert [record["phase"] for record in result.history] == ["head", "finetune"]


def test_unfreeze_top_leaves_batch_norm_frozen():
    backbone = models.build_backbone("mobilenet_v3_small", (48, 48, 3))
    finetune.unfreeze_top(backbone, 20)
    trainable = [layer for layer in backbone.layers if layer.trainable]
    assert trainable and all(layer in backbone.layers[-20:] for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    finetune.unfreeze_top(backbone, 0)
    assert not backbone.trainable_weights


@pytest.mark.parametrize("name", sorted(models.BACKBONES))
def test_every_backbone_takes_raw_pixels_and_counts_its_flops(name):
    model = models.build_model(name, 3, (48, 48, 3))
    probabilities = np.asarray(model(np.full((2, 48, 48, 3), 128, np.float32), training=False))
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert models.forward_flops(model) > 1e6


def test_the_finetune_recipe_through_the_cli_with_a_weights_file(photo_folder, backbone_file, tmp_path):
    result = run_cli("train", "--recipe", "finetune", "--data", photo_folder, "--image-size", 48, "--weights",
                     backbone_file, "--epochs", 2, "--set", "head_epochs=1", "--set", "batch_size=16", "--out",
                     tmp_path / "run", "--no-report", "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    settings = json.loads((tmp_path / "run" / "run.json").read_text())
    assert settings["weights"] == str(backbone_file) and settings["recipe"]["model"] == "mobilenet_v3_small"
    assert loading.load_model(tmp_path / "run").input_shape == (48, 48, 3)  # safe mode loads the backbone


@pytest.mark.parametrize("options, fragment", [
    (["--model", "efficientnet_v2_b0", "--weights", "BACKBONE"], "is not a weights file of the efficientnet_v2_b0"),
    (["--model", "resnet999"], "unknown model 'resnet999'"),
    (["--weights", "nowhere.weights.h5"], "does not exist"),
    (["--recipe", "airbench_small", "--weights", "BACKBONE"], "applies to the Keras Applications backbones"),
    (["--image-size", "16"], "takes images of 32x32 or more"),
])
def test_bad_backbone_options_are_one_line_and_write_nothing(options, fragment, photo_folder, backbone_file, tmp_path):
    options = [str(backbone_file) if option == "BACKBONE" else option for option in options]
    recipe = [] if "--recipe" in options else ["--recipe", "finetune"]
    result = run_cli("train", *recipe, "--data", photo_folder, *options, "--out", tmp_path / "run", "--cache-dir",
                     tmp_path / "cache")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr[-2000:]
    assert fragment in result.stderr and not (tmp_path / "run").exists()


def test_imagenet_weights_offline_name_the_file_and_the_way_out(monkeypatch):
    def offline(*arguments, **options):
        raise Exception("URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/"
                        "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("keras.src.applications.mobilenet_v3.file_utils.get_file", offline)
    with pytest.raises(UserError) as raised:
        warmstart.read_backbone_weights("mobilenet_v3_small", "imagenet")
    message = str(raised.value)
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in message and "`weights` PATH" in message
    assert "Temporary failure in name resolution" in message and "\n" not in message
