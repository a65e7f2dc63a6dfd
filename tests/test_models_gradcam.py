"""Grad-CAM finds the object: on a task whose class is decided by a shape at a random place on a textured
background, the heatmap's maximum falls on the shape, for every model family and on the TensorFlow and the JAX
backends. The places are random, so a map centred or uniform by construction fails (checked below)."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import shape_task, share_on_shape
from imagerec.models import airbench, gradcam, inference, registry

pytest.importorskip("jax", reason="the jax extra is not installed (pip install 'imagerec[jax]')")

WORKER = Path(__file__).with_name("gradcam_worker.py")
# name: epochs of Adam on 400 images. seed's BatchNormalization statistics lag this short a fit (its predictions
# are near chance), yet its features already sit on the shape: the heatmap is tested, not the fit.
TRAINED = {"tiny": 20, "airbench_small": 10, "seed": 4}


@pytest.fixture(scope="module")
def task():
    train, test = shape_task(400, seed=0), shape_task(100, seed=1)
    return train, test


@pytest.fixture(scope="module")
def trained(task):
    """{name: inference model} trained on the shape task (airbench nets with their test-time views)."""
    (images, labels, _), _ = task
    models = {}
    for name, epochs in TRAINED.items():
        keras.utils.set_random_seed(0)
        net = registry.build_model(name, 2, (32, 32, 3))
        logits = not inference.outputs_probabilities(net)
        if logits:
            airbench.init_airbench_net(net, images)
        net.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
        net.fit(images.astype("float32"), labels, batch_size=16, epochs=epochs, verbose=0)
        models[name] = inference.inference_model(net, test_time_augmentation=logits)
    return models


@pytest.mark.parametrize("name", list(TRAINED))
def test_the_heatmap_peaks_on_the_shape_that_decides_the_class(trained, task, name):
    _, (images, _, boxes) = task
    maps = gradcam.GradCam(trained[name])(images)
    assert maps.shape == (len(images), 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and np.isclose(maps.max(), 1)
    assert share_on_shape(maps, boxes) >= 0.85


def test_a_centred_or_uniform_map_fails_the_criterion(task):
    _, (images, _, boxes) = task
    rows, columns = np.mgrid[0:32, 0:32]
    centred = np.exp(-((rows - 15.5) ** 2 + (columns - 15.5) ** 2) / 50)[None].repeat(len(images), axis=0)
    assert share_on_shape(centred, boxes) < 0.6
    assert share_on_shape(np.zeros_like(centred), boxes) < 0.2


def test_an_airbench_net_is_cut_at_a_7x7_map_not_its_3x3_last_one(trained):
    explainer = gradcam.GradCam(trained["airbench_small"])
    assert explainer.layer_name == "block3_conv1"  # the last map of at least MIN_MAP_SIDE cells (7x7)


def test_jax_gives_the_heatmaps_tensorflow_gives(trained, task, tmp_path):
    _, (images, _, boxes) = task
    for name in ("tiny", "airbench_small"):
        path = tmp_path / f"{name}.keras"
        trained[name].save(path)
        np.save(tmp_path / "images.npy", images)
        env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
        result = subprocess.run([sys.executable, str(WORKER), str(path), str(tmp_path / "images.npy"),
                                 str(tmp_path / "maps.npy")], env=env, capture_output=True, text=True, timeout=300,
                                cwd=Path(__file__).parent)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.split()[0] == "jax"
        on_jax = np.load(tmp_path / "maps.npy")
        np.testing.assert_allclose(on_jax, gradcam.GradCam(trained[name])(images), atol=2e-3)
        assert share_on_shape(on_jax, boxes) >= 0.85


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_v2_b0", "resnet50_v2"])
def test_a_backbone_is_cut_inside_it_at_a_map_that_can_say_where(name):
    """At 32 px a backbone's own output is 1x1: the cut goes inside it (not within a residual block). Untrained
    here (from scratch, these do not learn the shape task in a test's time): the maps are checked for form."""
    model = registry.build_model(name, 2, (32, 32, 3))
    explainer = gradcam.GradCam(model)
    assert explainer.layer_name.startswith("backbone/")
    images, _, _ = shape_task(4, seed=2)
    maps = explainer(images)
    assert maps.shape == (4, 32, 32) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
