"""Recipes: every number of a training run, in one frozen preset per recipe.

A recipe is data: the model to build, the optimiser and its settings, the epochs and the augmentation.
`train.train` reads nothing else. Two kinds exist: `SeedRecipe` (the tutorial: Adam, a plain phase then an
augmented phase) and `FastRecipe` (airbench-style: whitening, Nesterov SGD, Lookahead, test-time views).
"""

import dataclasses

from imagerec.errors import UserError


@dataclasses.dataclass(frozen=True)
class SeedRecipe:
    """The tutorial's two-phase Adam recipe. Epoch counts are full passes over the training split."""

    name: str
    model: str  # a name registered in imagerec.models
    batch_size: int  # images per optimiser step
    learning_rate: float  # Adam step size
    plain_epochs: int  # phase 1: original images
    augmented_epochs: int  # phase 2: with augmentation
    shift_fraction: float  # phase 2: max random shift, as a fraction of height and of width
    horizontal_flip: bool  # phase 2: random left-right mirror
    jit_compile: bool | str = "auto"  # XLA: Keras' "auto" compiles only when a GPU is visible
    mixed_precision: str = "off"  # "bf16" or "fp16": see train.PRECISION_POLICIES

    kind = "seed"
    epochs_field = "plain_epochs"  # what `imagerec train --epochs` sets

    @property
    def total_epochs(self) -> int:
        return self.plain_epochs + self.augmented_epochs

    def validate(self) -> "SeedRecipe":
        """Raise UserError for settings no run can use; return self."""
        if self.plain_epochs < 0 or self.augmented_epochs < 0:
            raise UserError(f"epoch counts must be 0 or more, got {self.plain_epochs} and {self.augmented_epochs}")
        if self.total_epochs == 0:
            raise UserError("nothing to train: both phases have 0 epochs")
        _check_common(self)
        if not 0 <= self.shift_fraction < 1:
            raise UserError(f"shift fraction must be in [0, 1), got {self.shift_fraction}")
        return self


@dataclasses.dataclass(frozen=True)
class FastRecipe:
    """airbench-style recipe (arXiv 2404.00498): see `fast_training.train_fast` for how each number is used.

    Learning rate and weight decay use airbench's decoupled units (per 1024 examples, independent of
    momentum): the SGD step size is learning_rate / (1024 * (1 + 1/(1 - momentum))) per summed example
    gradient, and L2 (added to the gradient, not decoupled) keeps the same per-step decay.
    """

    name: str
    model: str
    epochs: int
    batch_size: int = 1024  # airbench
    learning_rate: float = 11.5  # airbench: per 1024 examples, decoupled from momentum
    momentum: float = 0.85  # Nesterov
    weight_decay: float = 0.0153  # airbench: per 1024 examples, decoupled from the learning rate
    bias_lr_scale: float = 64.0  # BatchNorm biases learn this much faster (their weight decay does not scale)
    label_smoothing: float = 0.2
    lr_start: float = 0.2  # schedule: fraction of the peak at step 0 ...
    lr_peak_at: float = 0.23  # ... rising linearly to the peak at this fraction of all steps ...
    lr_end: float = 0.07  # ... then falling linearly to this fraction at the last step
    whiten_bias_epochs: int = 3  # the whitening layer's bias trains this many epochs, then freezes
    whitening_images: int = 5000  # training images whose 2x2 patches set the whitening
    lookahead_start_epoch: int = 3  # Lookahead/EMA begins in this epoch (0-based) ...
    lookahead_every: int = 5  # ... and pulls the weights to their average every this many steps,
    lookahead_decay: float = 0.95  # with decay (lookahead_decay ** every) * (step / total) ** 3
    lookahead_power: float = 3.0
    translate: int = 2  # random shift of up to this many pixels, reflect padding
    alternating_flip: bool = True  # each image mirrored on every other epoch (random start)
    test_time_augmentation: bool = True  # 6 views: image, mirror, 1-px shifts of both
    # Keras' "auto" compiles with XLA only when a GPU is visible. On this 2-core CPU, TensorFlow's own
    # (oneDNN) kernels train the fast nets 1.4-1.8x faster than XLA's (benchmarks/throughput.py).
    jit_compile: bool | str = "auto"
    mixed_precision: str = "off"  # "bf16" or "fp16": see train.PRECISION_POLICIES

    kind = "fast"
    epochs_field = "epochs"

    @property
    def total_epochs(self) -> int:
        return self.epochs

    def validate(self) -> "FastRecipe":
        if self.epochs < 1:
            raise UserError(f"epochs must be 1 or more, got {self.epochs}")
        _check_common(self)
        if not 0 <= self.momentum < 1:
            raise UserError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.translate < 0:
            raise UserError(f"translate must be 0 or more pixels, got {self.translate}")
        return self


def _check_common(recipe) -> None:
    if recipe.mixed_precision not in ("off", "bf16", "fp16"):
        raise UserError(f"mixed precision must be off, bf16 or fp16, got {recipe.mixed_precision!r}")
    if recipe.batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {recipe.batch_size}")
    if not recipe.learning_rate > 0:
        raise UserError(f"learning rate must be positive, got {recipe.learning_rate}")


# The original tutorial, kept faithfully. Measured on CIFAR-10 (JPEG copy), 2 CPU cores: see
# BENCHMARKS.md (`python benchmarks/seed_recipe.py`).
SEED = SeedRecipe(
    name="seed",
    model="seed",
    batch_size=32,  # the tutorial's model.fit(batch_size=32)
    learning_rate=1e-3,  # Adam's default, as in the tutorial
    plain_epochs=10,
    augmented_epochs=5,
    shift_fraction=0.1,  # ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1)
    horizontal_flip=True,
)

# airbench94's net and hyper-parameters (94.01% in 9.9 epochs on a GPU, official CIFAR-10); the default recipe.
# CPU, CIFAR-10 (JPEG copy), seed 0: 90.3% in 1,810 s (`python benchmarks/time_to_accuracy.py --model fast --epochs 10`).
FAST = FastRecipe(name="fast", model="fast", epochs=10)

# Smaller budgets, same method, epochs chosen by time budget (no tuning on the test set). Measured on
# CIFAR-10 (JPEG copy), 2 CPU cores (`python benchmarks/time_to_accuracy.py --model MODEL --epochs N`):
#   fast_small:  81.4 ± 0.2% in 159 s, 3 seeds (the seed recipe's accuracy in 1/13 of its time)
#   fast_medium: 88.4% in 759 s, seed 0
FAST_SMALL = FastRecipe(name="fast_small", model="fast_small", epochs=4)
FAST_MEDIUM = FastRecipe(name="fast_medium", model="fast_medium", epochs=8)

RECIPES = {recipe.name: recipe for recipe in (SEED, FAST, FAST_SMALL, FAST_MEDIUM)}


def get_recipe(name: str, epochs: int | None = None, **overrides):
    """The named preset with `overrides` (fields left None keep the preset's value), validated.

    `epochs` sets the recipe's main epoch count (the seed recipe's plain phase, the fast recipe's total).
    """
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of: {', '.join(sorted(RECIPES))}")
    recipe = RECIPES[name]
    changes = {key: value for key, value in overrides.items() if value is not None}
    if epochs is not None:
        changes[recipe.epochs_field] = epochs
    known = {field.name for field in dataclasses.fields(recipe)}
    unknown = set(changes) - known
    if unknown:
        raise UserError(f"recipe {name!r} has no setting(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(recipe, **changes).validate()
