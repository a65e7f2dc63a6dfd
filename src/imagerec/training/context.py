"""What a trainer is given besides the net, the data and the recipe: one frozen record, the same for every
recipe type, so a trainer reads what it needs and a new one needs no new argument lists."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class FitContext:
    """How to train: from which epoch, on what devices, watched by which callbacks.

    A trainer's `fit(net, dataset, recipe, context)` trains `net` in place from `first_epoch` (0-based; a
    resumed run's completed epochs) to `recipe.epochs`, inside the caller's strategy scope and dtype policy.
    """

    seed: int = 0
    first_epoch: int = 0
    warm_layers: frozenset = frozenset()  # layers a warm start loaded (airbench keeps a loaded whitening)
    strategy: object = None  # a tf.distribute strategy, or None: one device (`distribute.fit`)
    validation_data: object = None  # (images, labels), ArrayBatches, or None
    callbacks: tuple = ()  # the caller's: backup, history, NaN stop, TensorBoard, its own
    verbose: int = 0

    def fit_options(self, *extra_callbacks) -> dict:
        """`distribute.fit`'s keyword arguments: the strategy, validation, verbosity and callbacks (a trainer's
        own callbacks first)."""
        return {"strategy": self.strategy, "validation_data": self.validation_data, "verbose": self.verbose,
                "callbacks": [*extra_callbacks, *self.callbacks]}
