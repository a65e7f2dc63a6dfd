"""The model registry: nets by name, each entry carrying what a caller must know before building one.

As timm's registry, an entry states its own facts (its family, whether it ends in probabilities or logits, the
smallest side it takes, a fixed shape) and the registry reads only those, never a family's tables. This module
does not import Keras: recipes, the CLI and option checks ask it questions for free; the family modules
(`FAMILY_MODULES`), which build Keras models, register themselves on the first lookup.
"""

import dataclasses
import importlib

from imagerec.errors import UserError

INPUT_NAME = "image"  # every model's input, and the SavedModel signature's input key
# Earlier names of the airbench nets and of the recipes that train them ("fast" said how quick, not what it
# is); model.json files and commands of older runs still name them.
ALIASES = {"fast": "airbench", "fast_medium": "airbench_medium", "fast_small": "airbench_small"}
# The modules whose import registers their models (each calls `register_model`).
FAMILY_MODULES = ("imagerec.models.tutorial", "imagerec.models.airbench", "imagerec.models.backbones")
MIN_SIDE = 8  # no net here takes images smaller than this


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered net: `builder(input_shape, num_classes)` → keras.Model, and its facts."""

    name: str
    builder: object
    family: str  # "tutorial", "airbench" or "backbone": a recipe names the families its trainer takes
    outputs: str  # "probabilities" (ends in softmax) or "logits" (the inference model adds the softmax)
    min_side: int = MIN_SIDE  # the smallest image side it takes
    fixed_shape: tuple | None = None  # the one input shape it takes (H, W, 3), or None for any
    description: str = ""  # what the net is, for messages ("the tutorial's 32x32 CNN")

    def check_input_shape(self, input_shape) -> None:
        """UserError unless this net takes images of `input_shape` (H, W, 3)."""
        height, width = input_shape[:2]
        if self.fixed_shape is not None and tuple(input_shape) != tuple(self.fixed_shape):
            fixed_height, fixed_width = self.fixed_shape[:2]
            raise UserError(f"the {self.name} model is {self.description} and takes {fixed_height}x{fixed_width} "
                            f"images only, got {height}x{width}: use `image_size` {fixed_height}, or an airbench "
                            f"recipe, which takes any size")
        if min(height, width) < self.min_side:
            raise UserError(f"the {self.name} model takes images of {self.min_side}x{self.min_side} or more, got "
                            f"{height}x{width}")


_ENTRIES = {}


def register_model(family: str, outputs: str, min_side: int = MIN_SIDE, fixed_shape=None, description: str = "",
                   name: str | None = None):
    """Decorator: make `builder(input_shape, num_classes)` available as `build_model(name or builder.__name__)`."""
    def register(builder):
        entry = ModelEntry(name or builder.__name__, builder, family, outputs, min_side,
                           None if fixed_shape is None else tuple(fixed_shape), description)
        _ENTRIES[entry.name] = entry
        return builder

    return register


def _registered() -> dict:
    for module in FAMILY_MODULES:
        importlib.import_module(module)  # each registers its nets when first imported
    return _ENTRIES


def model_names() -> list:
    return sorted(_registered())


def entry(name: str) -> ModelEntry:
    """The entry of `name` (or of an alias of it); UserError for an unknown model."""
    entries = _registered()
    if ALIASES.get(name, name) not in entries:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(entries))}")
    return entries[ALIASES.get(name, name)]


def check_model_name(name: str) -> None:
    """UserError unless `name` is a registered model."""
    entry(name)


def check_input_shape(name: str, input_shape) -> None:
    """UserError unless model `name` is registered and takes images of `input_shape` (H, W, 3)."""
    entry(name).check_input_shape(input_shape)


def build_model(name: str, num_classes: int, input_shape=(32, 32, 3)):
    """The registered net `name` (a keras.Model) for `num_classes` classes at `input_shape`; UserError for an
    unknown name or a shape it does not take."""
    model = entry(name)
    model.check_input_shape(input_shape)
    return model.builder(tuple(input_shape), int(num_classes))
