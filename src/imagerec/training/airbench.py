"""The airbench recipe's trainer (arXiv 2404.00498, KellerJordan/cifar10-airbench, re-written for Keras):
the batch plan, the train step and the fit of a whitened, dirac-initialised convnet, in Keras ops, so it
trains on every Keras backend (TensorFlow, JAX).

Batches are planned on the host from the seed alone (order, shifts, flips: `epoch_plan`), so both backends
see the same batches; the uint8 images are gathered by index and shifted/mirrored inside the train step
(on the GPU when there is one). TensorFlow feeds them through tf.data (which tf.distribute needs), other
backends through a generator. `training.run` calls `fit` inside the run's strategy scope and dtype policy;
everything that makes the run directory (backup, history, saving) stays there.
"""

import keras
import numpy as np
from keras import ops

from imagerec import backends
from imagerec.models import airbench as airbench_nets
from imagerec.training import augment, batches, class_weights, distribute, optim
from imagerec.training.context import FitContext
from imagerec.errors import UserError

CROP_MIN_SIDE = 48  # images this size or larger get random resized crops (recipe.crop_scale); smaller ones shifts


def translate_pixels(translate: int, image_shape) -> int:
    """The recipe's `translate` (pixels per 32 px of image side, airbench's 2 at CIFAR-10's size) in pixels."""
    return translate * max(1, min(image_shape[0], image_shape[1]) // 32)


def whitening_sample_size(whitening_images: int, image_shape) -> int:
    """How many training images set the whitening: the recipe's count at 32x32, fewer for larger images (the
    same number of pixels), so that the patches' covariance is computed in bounded memory."""
    return max(64, whitening_images * 32 * 32 // (image_shape[0] * image_shape[1]))


def epoch_plan(count: int, batch_size: int, seed: int, epoch: int, translate: int, alternating_flip: bool,
               crop_scale: float = 1.0, corruption_share: float = 0.0) -> dict:
    """One epoch's batches as index arrays: "indices" (steps, batch) into the training images (a seeded
    permutation, the last partial batch dropped), "offsets" (steps, batch, 2) crop offsets in [0, 2 * translate],
    "flips" (steps, batch) mirror or not, "boxes" (steps, batch, 4) random resized crops (top, left, height,
    width as fractions; `crop_scale` to 1 of the area, aspect 3/4 to 4/3; the whole image when `crop_scale` is 1).
    Depends only on (seed, epoch): reproducible, resumable, and the same on every backend and worker.

    Alternating flip: each image starts mirrored or not at random (per seed) and switches every epoch, so it
    is seen both ways every two epochs (more diverse than a coin per epoch); without it, a coin per epoch.
    """
    steps = count // batch_size
    rng = np.random.default_rng([seed, epoch, 1])
    order = rng.permutation(count)[:steps * batch_size].reshape(steps, batch_size)
    offsets = rng.integers(0, 2 * translate + 1, size=(steps, batch_size, 2), dtype=np.int32)
    if alternating_flip:
        start_flipped = np.random.default_rng([seed, 0, 0]).random(count) < 0.5
        flips = start_flipped[order] != bool(epoch % 2)
    else:
        flips = rng.random((steps, batch_size)) < 0.5
    return {"indices": order.astype(np.int32), "offsets": offsets, "flips": flips,
            "boxes": _crop_boxes(np.random.default_rng([seed, epoch, 2]), (steps, batch_size), crop_scale),
            "corrupt": _corruption_plan(np.random.default_rng([seed, epoch, 3]), (steps, batch_size),
                                        corruption_share)}


def _corruption_plan(rng, shape, share: float) -> np.ndarray:
    """(kind, strength, noise plane) per image, float32 (*shape, 3): `share` of the images get one of
    `augment.CORRUPTION_KINDS`' corruptions (uniformly), at a strength uniform in [0, 1]."""
    kinds = np.where(rng.random(shape) < share, rng.integers(1, len(augment.CORRUPTION_KINDS), shape), 0)
    return np.stack([kinds, rng.random(shape), rng.integers(0, augment.NOISE_BANK, shape)], axis=-1).astype(np.float32)


def _crop_boxes(rng, shape, crop_scale: float) -> np.ndarray:
    """(top, left, height, width) fractions: area uniform in [crop_scale, 1], log-aspect uniform in
    [log 3/4, log 4/3] (torchvision's RandomResizedCrop ranges), placed uniformly inside the image."""
    if crop_scale >= 1:
        return np.broadcast_to(np.array([0, 0, 1, 1], np.float32), (*shape, 4))
    area = rng.uniform(crop_scale, 1, shape)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), shape))
    height, width = np.minimum(1, np.sqrt(area / aspect)), np.minimum(1, np.sqrt(area * aspect))
    top, left = rng.uniform(0, 1, shape) * (1 - height), rng.uniform(0, 1, shape) * (1 - width)
    return np.stack([top, left, height, width], axis=-1).astype(np.float32)


def plan_batches(count: int, batch_size: int, epochs: int, seed: int, translate: int, alternating_flip: bool,
                 first_epoch: int = 0, crop_scale: float = 1.0, corruption_share: float = 0.0):
    """Yield (indices, offsets, flips, boxes, corrupt) of every step of epochs `first_epoch`..`epochs - 1`."""
    for epoch in range(first_epoch, epochs):
        plan = epoch_plan(count, batch_size, seed, epoch, translate, alternating_flip, crop_scale, corruption_share)
        yield from zip(plan["indices"], plan["offsets"], plan["flips"], plan["boxes"], plan["corrupt"])


def augment_planned(images, offsets, flips, boxes, translate: int, crop: bool, corrupt=None, bank=None):
    """A planned batch augmented (float32): corrupted as planned when a noise `bank` is given (before the crop
    and flip, which then move the noise too), then with `crop` the random resized crops (which move the image
    themselves) and the flips; else airbench's shifts and flips."""
    if bank is not None:
        images = augment.corrupt_planned(images, corrupt, bank)
    if crop:
        return augment.translate_and_flip(augment.resized_crop(images, boxes), offsets, flips, 0)
    return augment.translate_and_flip(images, offsets, flips, translate)


def crops_for(recipe, image_shape) -> bool:
    """Whether a run crops (`crop_scale` < 1 and images of CROP_MIN_SIDE px or more)."""
    return recipe.crop_scale < 1 and min(image_shape[0], image_shape[1]) >= CROP_MIN_SIDE


def airbench_batches(images, labels, batch_size: int, epochs: int, seed: int, translate: int,
                     alternating_flip: bool, first_epoch: int = 0, crop_scale: float = 1.0,
                     corruption_share: float = 0.0):
    """Epochs `first_epoch`..`epochs - 1` of training batches as one stream for `AirbenchTrainer`.

    On other backends than TensorFlow, a generator of ({"images": uint8 (B, H, W, C), "offsets", "flips",
    "boxes"}, labels): the trainer augments in its compiled step, on the device. On TensorFlow, a
    tf.data.Dataset of (augmented float32 images, labels): the same `augment_planned` runs in the tf.data
    map, overlapping the train step (in the step it cost 3-5% of the small net's throughput on 2 cores).
    `crop_scale` < 1: random resized crops instead of shifts. `corruption_share` > 0: that share of the images
    corrupted (`augment.corrupt_planned`, with `augment.noise_bank(seed)`)."""
    plans = plan_batches(len(labels), batch_size, epochs, seed, translate, alternating_flip, first_epoch, crop_scale,
                         corruption_share)
    crop = crop_scale < 1
    if not backends.is_tensorflow():
        return (({"images": images[indices], "offsets": offsets, "flips": flips, "boxes": boxes, "corrupt": corrupt},
                 labels[indices]) for indices, offsets, flips, boxes, corrupt in plans)
    import tensorflow as tf

    steps = list(plans)
    if not steps:  # a resumed run that had finished its epochs: nothing left to train
        return tf.data.Dataset.from_tensor_slices((images[:0].astype(np.float32), labels[:0])).batch(batch_size)

    bank = tf.constant(augment.noise_bank(seed, images.shape[1:])) if corruption_share > 0 else None

    def augmented(batch_images, batch_labels, step_offsets, step_flips, step_boxes, step_corrupt):
        return augment_planned(batch_images, step_offsets, step_flips, step_boxes, translate, crop, step_corrupt,
                               bank), batch_labels

    if images.nbytes > batches.IN_GRAPH_BYTES:  # a memory map: gathered on the host, batch by batch
        # Fixed, small buffers: AUTOTUNE grows them while the step is slower than the feed, by ~100 MB a batch
        # at 128 px, which is memory the data set was kept out of memory to save.
        return _gathered_on_host(images, labels, steps).map(augmented, num_parallel_calls=2).prefetch(2)
    indices, offsets, flips, boxes, corrupt = (np.stack(column) for column in zip(*steps))
    images, labels = tf.constant(images), tf.constant(labels)
    return tf.data.Dataset.from_tensor_slices((indices, offsets, flips, boxes, corrupt)).map(
        lambda step_indices, *rest: augmented(tf.gather(images, step_indices), tf.gather(labels, step_indices), *rest),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _gathered_on_host(images, labels, steps):
    """The planned batches gathered from `images` (a memory map) by NumPy: (uint8 images, labels, offsets, flips,
    boxes, corrupt)."""
    import tensorflow as tf

    batch_size = len(steps[0][0])
    signature = (tf.TensorSpec((batch_size, *images.shape[1:]), tf.uint8), tf.TensorSpec((batch_size,), tf.int32),
                 tf.TensorSpec((batch_size, 2), tf.int32), tf.TensorSpec((batch_size,), tf.bool),
                 tf.TensorSpec((batch_size, 4), tf.float32), tf.TensorSpec((batch_size, 3), tf.float32))
    return tf.data.Dataset.from_generator(
        lambda: ((images[indices], labels[indices], *rest) for indices, *rest in steps), output_signature=signature)


class AirbenchTrainer(keras.Model):
    """Wraps an airbench net for Keras' own `fit` on any backend: its input is a planned batch ({"images",
    "offsets", "flips"}), shifted and mirrored here, in the compiled step, or images (augmented already by
    TensorFlow's tf.data, or for evaluation).
    The update rule is `optim.AirbenchSGD`'s, the loss label-smoothed cross-entropy."""

    def __init__(self, net, recipe, **kwargs):
        super().__init__(**kwargs)
        self.net, self.recipe = net, recipe
        self.translate = translate_pixels(recipe.translate, net.input_shape[1:])
        self.crop = crops_for(recipe, net.input_shape[1:])
        self.lookahead_state = optim.LookaheadState(net)  # checkpointed with the trainer (resume)
        self.noise_bank = None  # `fit` sets it where the compiled step corrupts (not TensorFlow: tf.data does)
        self.built = True  # the net is built; BackupAndRestore requires it

    def call(self, inputs, training=False):
        return self.net(self.augmented(inputs) if isinstance(inputs, dict) else inputs, training=training)

    def augmented(self, batch: dict):
        """A planned batch's images, shifted and mirrored as planned (float32)."""
        return augment_planned(batch["images"], batch["offsets"], batch["flips"], batch["boxes"], self.translate,
                               self.crop, batch.get("corrupt"), self.noise_bank)


def smoothed_cross_entropy(label_smoothing: float, class_weights=None):
    """Cross-entropy of integer labels against logits, with label smoothing (Keras' sparse loss has none), each
    image's loss times its class's weight when `class_weights` (K,) are given. The weights live in the loss, not
    in `fit(class_weight=...)`, which Keras does not apply to the generators that feed JAX."""
    weights = None if class_weights is None else ops.convert_to_tensor(np.asarray(class_weights, np.float32))

    def loss(labels, logits):
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        targets = ops.one_hot(labels, ops.shape(logits)[-1])
        losses = keras.losses.categorical_crossentropy(targets, ops.cast(logits, "float32"), from_logits=True,
                                                       label_smoothing=label_smoothing)
        return losses if weights is None else losses * ops.take(weights, labels)
    return loss


def sgd_learning_rate(recipe) -> float:
    """airbench's decoupled learning rate as the SGD step size for a batch-mean loss."""
    return recipe.learning_rate * recipe.batch_size / (1024 * (1 + 1 / (1 - recipe.momentum)))


def fit(net, dataset, recipe, context: FitContext) -> None:
    """Train an airbench-family `net` in place: whitening from the data (unless a warm start loaded it, with the
    filters that were trained on it), then Nesterov SGD with the recipe's schedule, Lookahead and the
    whitening-bias freeze, from `context.first_epoch` (the caller's callbacks back up and log)."""
    steps = len(dataset.y_train) // recipe.batch_size
    if steps == 0:
        raise UserError(f"`batch_size` {recipe.batch_size} is larger than the {len(dataset.y_train)} training images")
    if airbench_nets.WHITENING_LAYER not in context.warm_layers:
        whitening_count = whitening_sample_size(recipe.whitening_images, dataset.image_shape)
        sample = np.random.default_rng(context.seed).choice(len(dataset.y_train),
                                                            min(whitening_count, len(dataset.y_train)), replace=False)
        airbench_nets.init_airbench_net(net, dataset.x_train[np.sort(sample)])
    weights = class_weights.class_weights(dataset.y_train, dataset.num_classes, recipe.class_weight)
    trainer = compiled_trainer(net, recipe, steps, weights)
    lookahead = optim.Lookahead(net, trainer.lookahead_state, steps * recipe.epochs, steps,
                                recipe.lookahead_start_epoch, recipe.lookahead_every, recipe.lookahead_decay,
                                recipe.lookahead_power)
    if recipe.corruption_augment > 0 and not backends.is_tensorflow():
        trainer.noise_bank = ops.convert_to_tensor(augment.noise_bank(context.seed, dataset.image_shape))
    stream = airbench_batches(dataset.x_train, dataset.y_train, recipe.batch_size, recipe.epochs, context.seed,
                               trainer.translate, recipe.alternating_flip, context.first_epoch,
                               recipe.crop_scale if trainer.crop else 1.0, recipe.corruption_augment)
    distribute.fit(trainer, stream, epochs=recipe.epochs, steps_per_epoch=steps, initial_epoch=context.first_epoch,
                   **context.fit_options(lookahead))


def compiled_trainer(net, recipe, steps_per_epoch: int, class_weights=None) -> AirbenchTrainer:
    """The net in a trainer, compiled with airbench's loss (`class_weights` (K,) per class, or None), schedule
    and update."""
    trainer = AirbenchTrainer(net, recipe)
    schedule = optim.TriangleSchedule(sgd_learning_rate(recipe), steps_per_epoch * recipe.epochs, recipe.lr_start,
                                      recipe.lr_peak_at, recipe.lr_end)
    # airbench's decoupled units: this L2 gives every variable the same per-step decay.
    optimizer = optim.AirbenchSGD(schedule, recipe.momentum, l2=recipe.weight_decay / recipe.learning_rate,
                                  bias_lr_scale=recipe.bias_lr_scale,
                                  whiten_bias_steps=recipe.whiten_bias_epochs * steps_per_epoch,
                                  muon_learning_rate=recipe.muon_learning_rate, muon_momentum=recipe.muon_momentum,
                                  peak_learning_rate=sgd_learning_rate(recipe))
    trainer.compile(optimizer=optimizer, loss=smoothed_cross_entropy(recipe.label_smoothing, class_weights),
                    metrics=["accuracy"], jit_compile=recipe.jit_compile)
    return trainer
