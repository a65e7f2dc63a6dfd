import pytest

from imagerec import models, recipes
from imagerec.errors import UserError


def test_seed_recipe_is_the_tutorial():
    seed = recipes.get_recipe("seed")
    assert (seed.model, seed.batch_size, seed.learning_rate) == ("seed", 32, 1e-3)
    assert (seed.plain_epochs, seed.augmented_epochs, seed.total_epochs) == (10, 5, 15)
    assert (seed.shift_fraction, seed.horizontal_flip) == (0.1, True)


def test_every_recipe_names_a_registered_model():
    for recipe in recipes.RECIPES.values():
        assert recipe.model in models.MODELS


def test_overrides_replace_only_given_fields():
    recipe = recipes.get_recipe("seed", plain_epochs=2, batch_size=None)
    assert recipe.plain_epochs == 2 and recipe.batch_size == 32


def test_epochs_sets_each_recipes_main_count():
    assert recipes.get_recipe("seed", epochs=3).plain_epochs == 3
    assert recipes.get_recipe("fast", epochs=3).epochs == 3


def test_fast_recipe_is_airbench94():
    fast = recipes.get_recipe("fast")
    assert (fast.model, fast.batch_size, fast.momentum, fast.label_smoothing) == ("fast", 1024, 0.85, 0.2)
    assert (fast.learning_rate, fast.weight_decay, fast.bias_lr_scale) == (11.5, 0.0153, 64.0)
    assert (fast.translate, fast.alternating_flip, fast.test_time_augmentation) == (2, True, True)


def test_a_setting_of_another_recipe_is_refused():
    with pytest.raises(UserError, match="has no setting"):
        recipes.get_recipe("fast", augmented_epochs=3)


@pytest.mark.parametrize("overrides, match", [
    ({"plain_epochs": -1}, "0 or more"),
    ({"plain_epochs": 0, "augmented_epochs": 0}, "nothing to train"),
    ({"batch_size": 0}, "at least 1"),
    ({"learning_rate": -0.1}, "positive"),
    ({"shift_fraction": 1.5}, r"\[0, 1\)"),
])
def test_nonsense_settings_are_user_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        recipes.get_recipe("seed", **overrides)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(UserError, match="choose one of: fast, fast_medium, fast_small, seed"):
        recipes.get_recipe("turbo")
