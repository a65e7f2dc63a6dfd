"""The finetune recipe's trainer: a Keras Applications backbone under a new head, in two phases.

Phase 1 trains the head on the frozen backbone; phase 2 unfreezes the backbone's top `unfreeze_layers` layers
(BatchNormalization excepted, and the backbone is called in inference mode: Keras' transfer-learning guide) and
trains on at a lower learning rate. Batches are read from the uint8 arrays (memory maps too) one at a time
(`batches.ArrayBatches`), so any Keras backend trains it and memory does not grow with the data. `train.train`
calls `fit` inside the run's strategy scope and dtype policy; the run directory stays `train`'s.
"""

import keras

from imagerec import data, distribute, models
from imagerec.batches import ArrayBatches
from imagerec.errors import UserError


def fit(net, dataset, recipe, seed: int, first_epoch: int = 0, warm_layers=(), **fit_options) -> None:
    """Phase 1 (epochs up to `head_epochs`): the head alone; phase 2: the top of the backbone too. Each phase is
    one Keras `fit` with Adam; `fit_options` go to `distribute.fit` (strategy, validation_data, verbose,
    callbacks). `warm_layers` changes nothing here (the backbone's weights are loaded before)."""
    if models.BACKBONE_LAYER not in [layer.name for layer in net.layers]:
        raise UserError(f"the finetune recipe trains the Keras Applications backbones ({', '.join(models.BACKBONES)}); "
                        f"{recipe.model!r} is not one of them")
    backbone = net.get_layer(models.BACKBONE_LAYER)
    weights = data.class_weights(dataset.y_train, dataset.num_classes, recipe.class_weight)
    fit_options["class_weight"] = None if weights is None else dict(enumerate(weights.tolist()))
    phases = [(first_epoch, recipe.head_epochs, 0, recipe.learning_rate),  # (first epoch, end, unfrozen, rate)
              (max(first_epoch, recipe.head_epochs), recipe.epochs, recipe.unfreeze_layers,
               recipe.finetune_learning_rate)]
    for start, end, unfrozen, learning_rate in phases:
        if start >= end:
            continue
        unfreeze_top(backbone, unfrozen)
        net.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"], jit_compile=recipe.jit_compile)  # compiling again applies `trainable`
        batches = ArrayBatches(dataset.x_train, dataset.y_train, recipe.batch_size, seed, start)
        distribute.fit(net, batches, epochs=end, initial_epoch=start, **fit_options)


def unfreeze_top(backbone, count: int) -> None:
    """Make the last `count` layers of `backbone` trainable and the rest frozen; BatchNormalization stays frozen
    (fine-tuning would otherwise move the statistics the pretrained filters expect)."""
    backbone.trainable = count > 0
    for position, layer in enumerate(backbone.layers):
        top = position >= len(backbone.layers) - count
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
