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
    with pytest.raises(UserError, match="choose one of: seed"):
        recipes.get_recipe("turbo")
