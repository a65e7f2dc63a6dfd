"""The original tutorial's CNN, exactly."""

import pytest

from imagerec import models
from imagerec.errors import UserError


def test_seed_model_has_the_tutorials_parameter_count():
    assert models.count_params(models.build_model("seed", 10)) == 2_397_226


def test_seed_model_layers_follow_the_tutorial():
    model = models.build_model("seed", 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:2] == ["InputLayer", "Rescaling"]
    assert kinds.count("Conv2D") == 6 and kinds.count("BatchNormalization") == 6
    assert kinds.count("MaxPooling2D") == 3 and kinds.count("Dropout") == 2
    assert [layer.filters for layer in model.layers if kinds[model.layers.index(layer)] == "Conv2D"] == \
        [32, 32, 64, 64, 128, 128]


def test_rescaling_lives_inside_the_model():
    model = models.build_model("seed", 10)
    rescale = next(layer for layer in model.layers if type(layer).__name__ == "Rescaling")
    assert rescale.scale == pytest.approx(1 / 255)


def test_the_seed_net_refuses_another_size_in_one_line():
    with pytest.raises(UserError, match="takes 32x32 images only, got 64x64"):
        models.build_model("seed", 10, (64, 64, 3))
