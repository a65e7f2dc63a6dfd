"""Recipes: every number of a training run, in one frozen preset per recipe.

A recipe is data: the model to build, the optimiser and its settings, the epochs and the augmentation.
`training.run.train` reads nothing else. A recipe type also carries its own facts, as class attributes (not
settings: run.json does not record them): `trainer`, the module whose `fit(net, dataset, recipe, context)`
trains it; `model_families`, the registry families that trainer takes; `needs_tensorflow`; `resumable`;
`default_validation`, what `validation="auto"` means for it; and `phase_field`, the setting that splits its
epochs into two phases, if any. A new training method is one recipe type here plus one trainer module.
Three types exist:
`SeedRecipe` (the tutorial: Adam, a plain phase then an augmented phase), `AirbenchRecipe` (airbench-style:
patch whitening, dirac-initialised convolutions, Nesterov SGD, Lookahead, test-time views) and `FinetuneRecipe`
(a Keras Applications backbone: a new head, then its top layers fine-tuned). Every recipe
has `epochs` (all of them), `model`, `batch_size`, `learning_rate`, `jit_compile` and `mixed_precision`.
"""

import dataclasses
import math

from imagerec.errors import UserError
from imagerec.models import registry


# auto: bf16 where the hardware runs it fast (a GPU, a CPU with AVX512_BF16/AMX), else off; off: float32;
# bf16: mixed bfloat16; fp16: mixed float16 (GPUs). `precision.resolve_precision` decides auto.
PRECISIONS = ("auto", "off", "bf16", "fp16")
# none: every image counts the same; balanced: each class's images weigh n / (classes * n_class) in the loss
# (scikit-learn's "balanced"), so that every class counts the same in total (`class_weights`).
CLASS_WEIGHTS = ("none", "balanced")
# What each epoch is validated on (`train`'s `validation`): a stratified hold-out of the training images, the
# test split (the tutorial's), nothing; auto: the recipe type's `default_validation`.
VALIDATIONS = ("auto", "holdout", "test", "none")


@dataclasses.dataclass(frozen=True)
class SeedRecipe:
    """The tutorial's two-phase Adam recipe: the first `epochs - augmented_epochs` epochs on the original
    images, the last `augmented_epochs` with shift/flip augmentation. Epochs are full passes over the
    training split; trained by `training.seed.fit`."""

    trainer = "imagerec.training.seed"
    model_families = ("tutorial",)  # nets that end in a softmax (Adam on their probabilities)
    needs_tensorflow = True  # its tf.data pipeline
    resumable = True
    default_validation = "test"  # the tutorial validates every epoch on the test split
    phase_field = "augmented_epochs"

    name: str
    model: str  # a name registered in imagerec.models
    batch_size: int  # images per optimiser step
    learning_rate: float  # Adam step size
    epochs: int  # both phases together
    augmented_epochs: int  # the last this many epochs are augmented (phase 2)
    shift_fraction: float  # phase 2: max random shift, as a fraction of height and of width
    horizontal_flip: bool  # phase 2: random left-right mirror
    jit_compile: bool | str = "auto"  # XLA: Keras' "auto" compiles only when a GPU is visible
    mixed_precision: str = "off"  # one of PRECISIONS
    class_weight: str = "none"  # one of CLASS_WEIGHTS
    calibration_images: int = 1000  # held out of train/ (at most 2%) to fit the temperature (`calibration`); 0: none

    test_time_augmentation = False  # the saved model sees each image once

    @property
    def plain_epochs(self) -> int:
        return self.epochs - self.augmented_epochs

    def phase(self, epoch: int) -> str:
        """The phase of 1-based `epoch`: "plain" or "augmented"."""
        return "plain" if epoch <= self.plain_epochs else "augmented"

    def validate(self) -> "SeedRecipe":
        """Raise UserError for settings no run can use; return self."""
        if self.epochs < 1:
            raise UserError(f"`epochs` must be 1 or more, got {self.epochs}")
        if not 0 <= self.augmented_epochs <= self.epochs:
            raise UserError(f"`augmented_epochs` must be from 0 to `epochs` ({self.epochs}): the last "
                            f"augmented_epochs of the epochs are augmented, got {self.augmented_epochs}")
        _check_common(self)
        if not 0 <= self.shift_fraction < 1:
            raise UserError(f"`shift_fraction` must be in [0, 1), got {self.shift_fraction}")
        return self


@dataclasses.dataclass(frozen=True)
class AirbenchRecipe:
    """airbench-style recipe (arXiv 2404.00498): see `training.airbench.fit` for how each number is used.

    Learning rate and weight decay use airbench's decoupled units (per 1024 examples, independent of
    momentum): the SGD step size is learning_rate / (1024 * (1 + 1/(1 - momentum))) per summed example
    gradient, and L2 (added to the gradient, not decoupled) keeps the same per-step decay.
    """

    trainer = "imagerec.training.airbench"
    model_families = ("airbench",)  # whitened, dirac-initialised nets returning logits
    needs_tensorflow = False  # Keras ops: any backend
    resumable = True
    default_validation = "none"  # its training data and results stay those of BENCHMARKS.md
    phase_field = None  # one phase: the schedule is a fraction of all steps, whatever the epochs

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
    translate: int = 2  # random shift of up to this many pixels per 32 px of side, reflect padding
    # Images of 48 px or more (airbench.CROP_MIN_SIDE): random resized crops of crop_scale to 1 of the area
    # (aspect 3/4 to 4/3) instead of shifts, as ImageNet training does; 1 turns them off. CIFAR-sized images
    # keep airbench's shifts.
    crop_scale: float = 0.35
    alternating_flip: bool = True  # each image mirrored on every other epoch (random start)
    test_time_augmentation: bool = True  # 6 views: image, mirror, 1-px shifts of both
    # share of training images given a random corruption (noise, blur, low contrast, a dithered palette, glass)
    # at a random strength (`augment.corrupt_planned`): robustness to what CIFAR-10-C and users do to images.
    # 0.3 (chosen on the validation hold-out; BENCHMARKS.md, *Robust training*) lifts the default recipe's
    # CIFAR-10-C mean from 60.5% to 79.7% and web GIFs from 18% to 82%, for 0.56-0.9 points of clean accuracy
    # (3 seeds): off by default, that is over the 0.5 points we allow the default.
    corruption_augment: float = 0.0
    # > 0: the convolution filters train with Muon at this step size (airbench94_muon: 0.24), not SGD
    muon_learning_rate: float = 0.0
    muon_momentum: float = 0.6  # Muon's Nesterov momentum (airbench94_muon)
    # Keras' "auto" compiles with XLA only when a GPU is visible. On this 2-core CPU, TensorFlow's own
    # (oneDNN) kernels train the fast nets 1.4-1.8x faster than XLA's (benchmarks/throughput.py).
    jit_compile: bool | str = "auto"
    # bf16 trains the airbench nets 1.1-1.5x faster on this CPU (AVX512_BF16) at the same accuracy
    # (BENCHMARKS.md); "off" forces float32.
    mixed_precision: str = "auto"  # one of PRECISIONS
    class_weight: str = "none"  # one of CLASS_WEIGHTS
    calibration_images: int = 1000  # held out of train/ (at most 2%) to fit the temperature (`calibration`); 0: none

    def phase(self, epoch: int) -> str:
        return "train"  # one phase: the schedule, not a phase, changes over the epochs

    def validate(self) -> "AirbenchRecipe":
        if self.epochs < 1:
            raise UserError(f"`epochs` must be 1 or more, got {self.epochs}")
        _check_common(self)
        if not 0 <= self.momentum < 1:
            raise UserError(f"`momentum` must be in [0, 1), got {self.momentum}")
        if self.translate < 0:
            raise UserError(f"`translate` must be 0 or more pixels, got {self.translate}")
        if not 0 <= self.corruption_augment <= 1:
            raise UserError(f"`corruption_augment` is the share of training images corrupted, in [0, 1], got "
                            f"{self.corruption_augment}")
        if not 0 < self.crop_scale <= 1:
            raise UserError(f"`crop_scale` is the smallest share of the area a crop keeps, in (0, 1], got "
                            f"{self.crop_scale}")
        if self.muon_learning_rate < 0 or not 0 <= self.muon_momentum < 1:
            raise UserError(f"`muon_learning_rate` must be 0 (off) or more and `muon_momentum` in [0, 1), got "
                            f"{self.muon_learning_rate} and {self.muon_momentum}")
        self._check_schedule()
        return self

    def _check_schedule(self) -> None:
        for field, low, high, value in (("label_smoothing", 0, 0.999, self.label_smoothing),
                                        ("lr_start", 0, 1, self.lr_start), ("lr_peak_at", 0, 1, self.lr_peak_at),
                                        ("lr_end", 0, 1, self.lr_end), ("lookahead_decay", 0, 1, self.lookahead_decay),
                                        ("weight_decay", 0, 1e6, self.weight_decay),
                                        ("lookahead_power", 0, 100, self.lookahead_power)):
            if not low <= value <= high:
                raise UserError(f"`{field}` must be from {low:g} to {high:g}, got {value}")
        if not self.bias_lr_scale > 0:
            raise UserError(f"`bias_lr_scale` must be positive, got {self.bias_lr_scale}")
        for field in ("lookahead_every", "whitening_images"):
            if getattr(self, field) < 1:
                raise UserError(f"`{field}` must be 1 or more, got {getattr(self, field)}")
        for field in ("lookahead_start_epoch", "whiten_bias_epochs"):
            if getattr(self, field) < 0:
                raise UserError(f"`{field}` must be 0 or more, got {getattr(self, field)}")


@dataclasses.dataclass(frozen=True)
class FinetuneRecipe:
    """Transfer learning as Keras' guide does it (keras.io/guides/transfer_learning): a Keras Applications
    backbone (`models.BACKBONES`) under a new head; phase 1 trains the head on the frozen backbone, phase 2
    unfreezes the backbone's top layers at a lower learning rate, its BatchNormalization kept in inference mode
    (frozen statistics and scales). Trained by `training.finetune.fit`; start from learned weights with `weights`."""

    trainer = "imagerec.training.finetune"
    model_families = ("backbone",)
    needs_tensorflow = False
    # Two fits, one per phase: Keras' BackupAndRestore keeps a restored epoch for the next fit (see training.seed).
    resumable = False
    default_validation = "none"
    phase_field = "head_epochs"

    name: str
    model: str  # one of models.BACKBONES
    epochs: int  # both phases together
    head_epochs: int  # phase 1: the first this many epochs train the head only
    batch_size: int = 32  # the guide's
    learning_rate: float = 1e-3  # phase 1: Adam's step size for the head
    finetune_learning_rate: float = 1e-5  # phase 2: Adam's step size, 100x lower (the guide's 1e-5)
    unfreeze_layers: int = 30  # phase 2: the backbone's last this many layers train (BatchNormalization never)
    jit_compile: bool | str = "auto"
    mixed_precision: str = "auto"  # one of PRECISIONS
    class_weight: str = "none"  # one of CLASS_WEIGHTS
    calibration_images: int = 1000  # held out of train/ (at most 2%) to fit the temperature (`calibration`); 0: none

    test_time_augmentation = False

    def phase(self, epoch: int) -> str:
        return "head" if epoch <= self.head_epochs else "finetune"

    def validate(self) -> "FinetuneRecipe":
        if self.epochs < 1 or not 0 <= self.head_epochs <= self.epochs:
            raise UserError(f"`epochs` must be 1 or more and `head_epochs` from 0 to `epochs`, got {self.epochs} and "
                            f"{self.head_epochs}")
        _check_common(self)
        if not self.finetune_learning_rate > 0 or self.unfreeze_layers < 0:
            raise UserError(f"`finetune_learning_rate` must be positive and `unfreeze_layers` 0 or more, got "
                            f"{self.finetune_learning_rate} and {self.unfreeze_layers}")
        return self


def check_model(recipe) -> None:
    """UserError unless the recipe's `model` is registered, in one of the families its trainer takes."""
    family = registry.entry(recipe.model).family
    if family not in recipe.model_families:
        takes = [name for name in registry.model_names() if registry.entry(name).family in recipe.model_families]
        raise UserError(f"the {recipe.name} recipe trains {', '.join(takes)}; {recipe.model!r} is of the {family} "
                        f"family")


def _check_common(recipe) -> None:
    for field in dataclasses.fields(recipe):
        value = getattr(recipe, field.name)
        if isinstance(value, float) and not math.isfinite(value):  # inf passes every `> 0` check
            raise UserError(f"`{field.name}` must be a finite number, got {value}")
    if recipe.class_weight not in CLASS_WEIGHTS:
        raise UserError(f"`class_weight` must be one of {', '.join(CLASS_WEIGHTS)}, got {recipe.class_weight!r}")
    if recipe.mixed_precision not in PRECISIONS:
        raise UserError(f"`mixed_precision` must be one of {', '.join(PRECISIONS)}, got {recipe.mixed_precision!r}")
    if recipe.jit_compile not in (True, False, "auto"):
        raise UserError(f"`jit_compile` must be true, false or auto, got {recipe.jit_compile!r}")
    if recipe.calibration_images < 0:
        raise UserError(f"`calibration_images` must be 0 (no calibration) or more, got {recipe.calibration_images}")
    if recipe.batch_size < 1:
        raise UserError(f"`batch_size` must be at least 1, got {recipe.batch_size}")
    if not recipe.learning_rate > 0:
        raise UserError(f"`learning_rate` must be positive, got {recipe.learning_rate}")


# The original tutorial, kept faithfully. Measured on CIFAR-10 (JPEG copy), 2 CPU cores: see
# BENCHMARKS.md (`python benchmarks/seed_recipe.py`).
SEED = SeedRecipe(
    name="seed",
    model="seed",
    batch_size=32,  # the tutorial's model.fit(batch_size=32)
    learning_rate=1e-3,  # Adam's default, as in the tutorial
    epochs=15,  # 10 plain, then 5 augmented
    augmented_epochs=5,
    shift_fraction=0.1,  # ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1)
    horizontal_flip=True,
)

# airbench94's net and hyper-parameters (94.01% in 9.9 epochs on a GPU, official CIFAR-10), kept faithfully.
# CPU, CIFAR-10 (JPEG copy), seed 0: 90.3% in 1,810 s
# (`python benchmarks/time_to_accuracy.py --recipe airbench`).
AIRBENCH = AirbenchRecipe(name="airbench", model="airbench", epochs=10)

# Smaller budgets, same method, settings chosen by time budget on a held-out slice of the training data
# (`--holdout 5000`), never the test set. Measured on CIFAR-10 (JPEG copy), 2 CPU cores, see BENCHMARKS.md
# (`python benchmarks/time_to_accuracy.py --recipe NAME --seeds 0 1 2`).
# airbench_muon: the airbench94 net with Muon for its filters (as airbench94_muon), for a 15-minute budget:
# on the holdout, 6 epochs gave 89.1% (13.9 min) where the half-width net needed 12 (89.4%, 15.2 min).
# SiLU for GELU (issue 24; hiverge's cifar10-speedrun did the same): forward+backward 9% faster on 2 CPU cores
# in bf16 (benchmarks/profile_step.py), holdout 89.56% against 89.1% with GELU.
AIRBENCH_MUON = AirbenchRecipe(name="airbench_muon", model="airbench_silu", epochs=6, muon_learning_rate=0.24)
AIRBENCH_MEDIUM = AirbenchRecipe(name="airbench_medium", model="airbench_medium", epochs=8)
# airbench_small, for a 90-second budget: on the holdout, Muon lifted 3 epochs from 78.4% to 81.1%, batch 512
# beat 1024 and 256 at 2 epochs (80.3% vs 79.0% and 79.9%), and Lookahead from the second epoch added 0.4.
# GELU kept (issue 24): SiLU (`--set model=airbench_small_silu`) trained 8% more images/s here but lost 0.4 points
# on the holdout (79.89% against 80.26%, 2 seeds against 5 runs).
AIRBENCH_SMALL = AirbenchRecipe(name="airbench_small", model="airbench_small", epochs=2, batch_size=512,
                                muon_learning_rate=0.24, lookahead_start_epoch=1)

# A Keras Applications backbone with a new head: 3 epochs for the head, then 3 with the top 30 layers unfrozen
# (Keras' transfer-learning guide). Meant for people's own images, from `--weights imagenet` (internet needed
# once) or a weights file; its throughput is in BENCHMARKS.md (random weights: no accuracy claimed here).
FINETUNE = FinetuneRecipe(name="finetune", model="mobilenet_v3_small", epochs=6, head_epochs=3)

RECIPES = {recipe.name: recipe for recipe in (AIRBENCH, AIRBENCH_MUON, AIRBENCH_MEDIUM, AIRBENCH_SMALL, SEED,
                                              FINETUNE)}
DEFAULT = AIRBENCH_MUON.name  # 90% in about 14 minutes on 2 CPU cores (BENCHMARKS.md)
# Earlier names of the airbench family ("fast" said how quick, not what it is); they still work. The same
# names as the models' (the default, airbench_muon, trains airbench_silu: airbench94's net with SiLU).
ALIASES = registry.ALIASES


def get_recipe(name: str = DEFAULT, *, scaled_epochs: int | None = None, **overrides):
    """The named preset (or an alias of one) with `overrides` (fields left None keep the preset's value),
    validated. Raises UserError for an unknown recipe, a field it does not have, or a value no run can use.

    `scaled_epochs` (the CLI's `--epochs`) stretches the whole schedule to that many epochs: a two-phase
    recipe's phase (`phase_field`) keeps its preset's share, rounded (the seed recipe's last third augmented,
    as the tutorial's 5 of 15; finetune's first half head-only), unless `overrides` sets it. `epochs` in
    `overrides` is exact (`--set epochs=N`): the phase keeps its preset value, or its share when that no
    longer fits."""
    name = ALIASES.get(name, name)
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    changes = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(changes) - set(field_types(recipe))
    if unknown:
        raise UserError(f"recipe {name!r} has no setting(s): {', '.join(sorted(unknown))}; it has: "
                        f"{', '.join(field_types(recipe))}")
    if scaled_epochs is not None:
        changes = {**changes, "epochs": scaled_epochs}
    recipe = dataclasses.replace(recipe, **changes)
    return _fitted_phases(recipe, changes, scale=scaled_epochs is not None).validate()


def _fitted_phases(recipe, changes: dict, scale: bool):
    """The recipe with its phase at the preset's share of its epochs, when that phase is not in `changes` and
    either `scale` or the preset's phase no longer fits in the epochs."""
    field = recipe.phase_field
    if field is None or field in changes or not isinstance(recipe.epochs, int):
        return recipe
    if not scale and getattr(recipe, field) <= recipe.epochs:
        return recipe
    preset = RECIPES[recipe.name]
    share = getattr(preset, field) / preset.epochs
    return dataclasses.replace(recipe, **{field: int(recipe.epochs * share + 0.5)})  # rounded half up


def describe() -> str:
    """Every recipe, its aliases and its settings (what `imagerec recipes` prints)."""
    lines = []
    for name, recipe in RECIPES.items():
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        lines.append(f"{name}{' (also: ' + ', '.join(aliases) + ')' if aliases else ''}: {type(recipe).__name__}")
        lines.append("  " + ", ".join(f"{field}={getattr(recipe, field)}" for field in field_types(recipe)))
    return "\n".join(lines)


def field_types(recipe) -> dict:
    """{field name: type} of a recipe's settings (name excluded: it names the preset)."""
    return {field.name: field.type for field in dataclasses.fields(recipe) if field.name != "name"}


def parse_settings(recipe_name: str, assignments) -> dict:
    """["field=value", ...] → {field: value} typed as the named recipe's fields (the CLI's and the
    benchmarks' `--set`). UserError for a malformed assignment, an unknown field or a value of the wrong type."""
    types = field_types(get_recipe(recipe_name))
    settings = {}
    for assignment in assignments:
        field, equals, text = assignment.partition("=")
        if not equals or not field:
            raise UserError(f"a setting is field=value, got {assignment!r}")
        if field not in types:
            raise UserError(f"recipe {recipe_name!r} has no setting {field!r}; it has: {', '.join(types)}")
        settings[field] = _parse_value(field, text, types[field])
    return settings


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _parse_value(field: str, text: str, kind):
    lowered = text.strip().lower()
    if kind in (bool, bool | str) and (lowered in _TRUE or lowered in _FALSE):
        return lowered in _TRUE
    if kind is bool:
        raise UserError(f"`{field}` is true or false, got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise UserError(f"`{field}` is a whole number, got {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise UserError(f"`{field}` is a number, got {text!r}") from None
    return text
