"""Recipes: every number of a training run, in one frozen preset per recipe.

A recipe is data: the model to build, the optimiser and its settings, the phases and their epochs,
and the augmentation. `train.train` reads nothing else.
"""

import dataclasses

from imagerec.errors import UserError


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training recipe. Epoch counts are full passes over the training split."""

    name: str
    model: str  # a name registered in imagerec.models
    batch_size: int  # images per optimiser step
    learning_rate: float  # Adam step size
    plain_epochs: int  # phase 1: original images
    augmented_epochs: int  # phase 2: with augmentation
    shift_fraction: float  # phase 2: max random shift, as a fraction of height and of width
    horizontal_flip: bool  # phase 2: random left-right mirror

    @property
    def total_epochs(self) -> int:
        return self.plain_epochs + self.augmented_epochs

    def validate(self) -> "Recipe":
        """Raise UserError for settings no run can use; return self."""
        if self.plain_epochs < 0 or self.augmented_epochs < 0:
            raise UserError(f"epoch counts must be 0 or more, got {self.plain_epochs} and {self.augmented_epochs}")
        if self.total_epochs == 0:
            raise UserError("nothing to train: both phases have 0 epochs")
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise UserError(f"learning rate must be positive, got {self.learning_rate}")
        if not 0 <= self.shift_fraction < 1:
            raise UserError(f"shift fraction must be in [0, 1), got {self.shift_fraction}")
        return self


# The original tutorial, kept faithfully. Measured on CIFAR-10 (JPEG copy), 2 CPU cores: see
# BENCHMARKS.md (`python benchmarks/seed_recipe.py`): ~46 min, ~81% test accuracy.
SEED = Recipe(
    name="seed",
    model="seed",
    batch_size=32,  # the tutorial's model.fit(batch_size=32)
    learning_rate=1e-3,  # Adam's default, as in the tutorial
    plain_epochs=10,
    augmented_epochs=5,
    shift_fraction=0.1,  # ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1)
    horizontal_flip=True,
)

RECIPES = {recipe.name: recipe for recipe in (SEED,)}


def get_recipe(name: str, **overrides) -> Recipe:
    """The named preset with `overrides` (fields left None keep the preset's value), validated."""
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of: {', '.join(sorted(RECIPES))}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(changes) - {field.name for field in dataclasses.fields(Recipe)}
    if unknown:
        raise UserError(f"unknown recipe setting(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(RECIPES[name], **changes).validate()
