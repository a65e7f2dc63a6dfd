"""The registry: every registered net takes raw pixels, and every entry states its net truly."""

import numpy as np
import pytest

from imagerec import models
from imagerec.errors import UserError

from helpers import modules_imported_by


@pytest.mark.parametrize("name", models.model_names())
@pytest.mark.parametrize("test_time_augmentation", [False, True])
def test_every_model_takes_raw_pixels_and_returns_probabilities(name, test_time_augmentation):
    model = models.build_model(name, num_classes=7, input_shape=(32, 32, 3))
    model = models.inference_model(model, test_time_augmentation=test_time_augmentation)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    probabilities = np.asarray(model(images.astype(np.float32), training=False))
    assert probabilities.shape == (4, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert models.forward_flops(model) > 0


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model 'resnet999'"):
        models.build_model("resnet999", 10)


@pytest.mark.parametrize("name", models.model_names())
def test_every_registry_entry_states_its_net_truly(name):
    entry = models.entry(name)
    shape = entry.fixed_shape or (max(32, entry.min_side),) * 2 + (3,)
    net = models.build_model(name, 5, shape)
    assert models.outputs_probabilities(net) == (entry.outputs == "probabilities")
    assert net.input_shape[1:] == tuple(shape) and net.inputs[0].name.startswith(models.INPUT_NAME)
    if entry.fixed_shape is None:
        with pytest.raises(UserError, match=f"takes images of {entry.min_side}x{entry.min_side} or more"):
            models.check_input_shape(name, (entry.min_side - 1, 64, 3))


def test_the_registry_answers_without_keras():
    loaded = modules_imported_by("from imagerec.models import registry\nfrom imagerec.training import recipes\n"
                                 "recipes.get_recipe('seed', scaled_epochs=3)")
    assert not loaded & {"keras", "tensorflow", "jax"}
