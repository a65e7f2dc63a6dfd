import pytest

from imagerec import models
from imagerec.training import recipes
from imagerec.errors import UserError


def test_seed_recipe_is_the_tutorial():
    seed = recipes.get_recipe("seed")
    assert (seed.model, seed.batch_size, seed.learning_rate) == ("seed", 32, 1e-3)
    assert (seed.plain_epochs, seed.augmented_epochs, seed.epochs) == (10, 5, 15)
    assert (seed.shift_fraction, seed.horizontal_flip) == (0.1, True)
    assert [seed.phase(epoch) for epoch in (1, 10, 11, 15)] == ["plain", "plain", "augmented", "augmented"]


def test_every_recipe_names_a_registered_model():
    for recipe in recipes.RECIPES.values():
        assert recipe.model in models.model_names()


def test_overrides_replace_only_given_fields():
    recipe = recipes.get_recipe("seed", epochs=7, batch_size=None)
    assert (recipe.epochs, recipe.plain_epochs, recipe.batch_size) == (7, 2, 32)


def test_every_recipe_has_one_epoch_field():
    assert recipes.get_recipe("seed", epochs=6).epochs == 6
    assert recipes.get_recipe("airbench", epochs=3).epochs == 3


def test_airbench_recipe_is_airbench94_and_the_old_names_still_work():
    airbench = recipes.get_recipe("airbench")
    assert (airbench.model, airbench.batch_size, airbench.momentum, airbench.label_smoothing) == \
        ("airbench", 1024, 0.85, 0.2)
    assert (airbench.learning_rate, airbench.weight_decay, airbench.bias_lr_scale) == (11.5, 0.0153, 64.0)
    assert (airbench.translate, airbench.alternating_flip, airbench.test_time_augmentation) == (2, True, True)
    assert recipes.get_recipe("fast") == airbench and recipes.get_recipe("fast_small").name == "airbench_small"
    assert models.build_model("fast_small", 10).count_params() == models.build_model("airbench_small", 10).count_params()


def test_a_setting_of_another_recipe_is_refused():
    with pytest.raises(UserError, match="has no setting"):
        recipes.get_recipe("airbench", augmented_epochs=3)


@pytest.mark.parametrize("overrides, match", [
    ({"epochs": 0}, "1 or more"),
    ({"augmented_epochs": -1}, "from 0 to `epochs`"),
    ({"epochs": 2, "augmented_epochs": 3}, "from 0 to `epochs`"),
    ({"batch_size": 0}, "at least 1"),
    ({"learning_rate": -0.1}, "positive"),
    ({"shift_fraction": 1.5}, r"\[0, 1\)"),
    ({"mixed_precision": "int4"}, "one of auto, off, bf16, fp16"),
    ({"jit_compile": "sometimes"}, "true, false or auto"),
    ({"learning_rate": float("inf")}, "finite"),
    ({"learning_rate": float("nan")}, "finite"),
])
def test_nonsense_settings_are_user_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        recipes.get_recipe("seed", **overrides)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(UserError, match="choose one of: airbench, airbench_muon, airbench_medium, airbench_small, seed"):
        recipes.get_recipe("turbo")


def test_settings_are_parsed_by_each_fields_type():
    settings = recipes.parse_settings("seed", ["epochs=4", "learning_rate=0.01", "horizontal_flip=off",
                                               "jit_compile=auto", "model=tiny"])
    assert settings == {"epochs": 4, "learning_rate": 0.01, "horizontal_flip": False, "jit_compile": "auto",
                        "model": "tiny"}
    assert recipes.parse_settings("fast", ["jit_compile=true"]) == {"jit_compile": True}
    for assignment, match in [("epochs=four", "whole number"), ("learning_rate=fast", "is a number"),
                              ("horizontal_flip=maybe", "true or false"), ("nonsense", "field=value"),
                              ("translate=2", "no setting 'translate'")]:
        with pytest.raises(UserError, match=match):
            recipes.parse_settings("seed", [assignment])


def test_describe_lists_every_recipe_alias_and_setting():
    text = recipes.describe()
    for name, recipe in recipes.RECIPES.items():
        assert name in text and all(f"{field}=" in text for field in recipes.field_types(recipe))
    assert "(also: fast_small)" in text


@pytest.mark.parametrize("overrides, match", [
    ({"lookahead_every": 0}, "lookahead_every` must be 1 or more"),
    ({"label_smoothing": 2.0}, "label_smoothing"), ({"lr_peak_at": 2.0}, "lr_peak_at"),
    ({"learning_rate": float("inf")}, "finite"), ({"whitening_images": 0}, "whitening_images"),
    ({"lookahead_start_epoch": -1}, "lookahead_start_epoch"),
])
def test_nonsense_airbench_settings_are_user_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        recipes.get_recipe("airbench_small", **overrides)


def test_fewer_epochs_than_the_seed_recipes_augmented_phase_keep_its_share():
    recipe = recipes.get_recipe("seed", epochs=3)  # the README's example
    assert (recipe.epochs, recipe.augmented_epochs) == (3, 1)  # the tutorial's last third (5 of 15)
    assert recipes.get_recipe("seed", epochs=3, augmented_epochs=2).augmented_epochs == 2
    assert recipes.get_recipe("seed", epochs=20).augmented_epochs == 5  # the preset's, where it fits
    assert recipes.get_recipe("finetune", epochs=2).head_epochs == 1
