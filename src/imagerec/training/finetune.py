"""The finetune recipe's trainer: a Keras Applications backbone under a new head, in two phases.

Phase 1 trains the head on the frozen backbone; phase 2 unfreezes the backbone's top `unfreeze_layers` layers
(BatchNormalization excepted, and the backbone is called in inference mode: Keras' transfer-learning guide) and
trains on at a lower learning rate. Batches are read from the uint8 arrays (memory maps too) one at a time
(`batches.ArrayBatches`), so any Keras backend trains it and memory does not grow with the data.
`training.run` calls `fit` inside the run's strategy scope and dtype policy; the run directory stays its.
"""

import keras

from imagerec.models import backbones
from imagerec.training import class_weights, distribute
from imagerec.training.batches import ArrayBatches
from imagerec.training.context import FitContext


def fit(net, dataset, recipe, context: FitContext) -> None:
    """Phase 1 (epochs up to `head_epochs`): the head alone; phase 2: the top of the backbone too. Each phase is
    one Keras `fit` with Adam (a backbone's weights were loaded before)."""
    backbone = net.get_layer(backbones.BACKBONE_LAYER)
    weights = class_weights.class_weights(dataset.y_train, dataset.num_classes, recipe.class_weight)
    class_weight = None if weights is None else dict(enumerate(weights.tolist()))
    first_epoch = context.first_epoch
    phases = [(first_epoch, recipe.head_epochs, 0, recipe.learning_rate),  # (first epoch, end, unfrozen, rate)
              (max(first_epoch, recipe.head_epochs), recipe.epochs, recipe.unfreeze_layers,
               recipe.finetune_learning_rate)]
    for start, end, unfrozen, learning_rate in phases:
        if start >= end:
            continue
        unfreeze_top(backbone, unfrozen)
        net.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"], jit_compile=recipe.jit_compile)  # compiling again applies `trainable`
        batches = ArrayBatches(dataset.x_train, dataset.y_train, recipe.batch_size, context.seed, start)
        distribute.fit(net, batches, epochs=end, initial_epoch=start, class_weight=class_weight,
                       **context.fit_options())


def unfreeze_top(backbone, count: int) -> None:
    """Make the last `count` layers of `backbone` trainable and the rest frozen; BatchNormalization stays frozen
    (fine-tuning would otherwise move the statistics the pretrained filters expect)."""
    backbone.trainable = count > 0
    for position, layer in enumerate(backbone.layers):
        top = position >= len(backbone.layers) - count
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
