"""Benchmark: where an airbench training step's time goes on this machine (synthetic data, no accuracy).

    python benchmarks/profile_step.py --recipe airbench_muon
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/profile_step.py --recipe airbench_muon --set mixed_precision=off

Times, after a warm-up, each part of the recipe's step alone and prints one table (ms per batch, share of the
full step): the forward pass; forward and backward (the gradients, no update); the full step as `fit` runs it
(gradients, the optimizer's update and Keras' step overhead); the optimizer's update alone, with Muon for the
filters and with SGD for every variable; Newton-Schulz alone on the net's filter banks; one Lookahead
update (it runs every `lookahead_every` steps: its share is per step); the augmentation of a batch as tf.data
runs it (in parallel with the step, so off the critical path while it is shorter); and the convolutions alone
(the same convolutions and pools without BatchNorm, activations or the whitening); then forward and backward
of the net with Keras' own BatchNorm (what training ran before `layers.FusedBatchNormalization`), with other
activations, and without BatchNorm. Differencing, not a tracer: each figure is a real compiled function timed
on its own, so the table adds up only roughly.

Use it before optimising a step and after, on the same machine, side by side. `ONEDNN_MAX_CPU_ISA=AVX2`
(oneDNN) and `XLA_FLAGS=--xla_cpu_max_isa=AVX2` (XLA) make an AVX-512 CPU run the kernels an AVX2-only one
would, for a first look at those CPUs when none is at hand.
"""

import argparse
import functools
import os
import time

import keras
import numpy as np

from imagerec import backends, machine, models
from imagerec.models import airbench as airbench_nets
from imagerec.models import layers as custom_layers
from imagerec.training import airbench, optim, precision, recipes

PARTS = ("forward", "forward+backward", "step", "update (Muon for filters)", "update (SGD for all)",
         "Newton-Schulz alone", "Lookahead update",
         "augmentation (tf.data)", "convolutions alone (fwd+bwd)", "fwd+bwd, Keras' own BatchNorm",
         "fwd+bwd, GELU", "fwd+bwd, GELU as tanh", "fwd+bwd, SiLU",
         "fwd+bwd, ReLU", "fwd+bwd, no BatchNorm")


def timed(function, repeats: int) -> float:
    """Median seconds of `function()` over `repeats` calls after two warm-up calls (compilation excluded)."""
    function(), function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def synthetic_batch(batch_size: int, image_size: int = 32):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
    return images, rng.integers(0, 10, batch_size).astype(np.int32)


def built_trainer(recipe, images):
    """The recipe's net and trainer as training builds them (with the fused BatchNorm kernel)."""
    with custom_layers.fused_batch_norm():
        net = models.build_model(recipe.model, 10, images.shape[1:])
    models.init_airbench_net(net, images[:500])
    return net, airbench.compiled_trainer(net, recipe, steps_per_epoch=10)


def measure_parts(recipe, repeats: int) -> dict:
    """{part: seconds per batch} for the recipe's net at its batch size."""
    import tensorflow as tf

    images, labels = synthetic_batch(recipe.batch_size)
    plan = airbench.epoch_plan(len(labels), recipe.batch_size, 0, 0, recipe.translate, True)
    augment = tf.function(lambda batch: airbench.augment_planned(batch, plan["offsets"][0], plan["flips"][0],
                                                                 plan["boxes"][0], recipe.translate, False))
    inputs = augment(tf.constant(images))
    seconds = {"augmentation (tf.data)": timed(lambda: augment(tf.constant(images)).numpy(), repeats)}
    net, trainer = built_trainer(recipe, images)
    forward = tf.function(lambda x: net(x, training=True))
    seconds["forward"] = timed(lambda: forward(inputs).numpy(), repeats)
    gradients = _gradients_of(net)
    seconds["forward+backward"] = timed(lambda: gradients(inputs, labels)[0].numpy(), repeats)
    seconds["step"] = timed(lambda: trainer.train_on_batch(inputs, labels), repeats)
    seconds["update (Muon for filters)"] = timed(_update_of(net, trainer.optimizer), repeats)
    sgd_net, sgd_trainer = built_trainer(_without_muon(recipe), images)
    seconds["update (SGD for all)"] = timed(_update_of(sgd_net, sgd_trainer.optimizer), repeats)
    seconds["Newton-Schulz alone"] = timed(_newton_schulz_on(net), repeats)
    lookahead = optim.Lookahead(net, trainer.lookahead_state, 100, 10, 0, 1, recipe.lookahead_decay,
                                recipe.lookahead_power)
    lookahead._update(1)
    seconds["Lookahead update"] = timed(lambda: lookahead._update(50), repeats) / recipe.lookahead_every
    seconds["convolutions alone (fwd+bwd)"] = timed(_convolutions_on(net, inputs, labels), repeats)
    for part, variant in _VARIANTS.items():
        gradients = _gradients_of(variant(recipe.model, images))
        seconds[part] = timed(lambda: gradients(inputs, labels)[0].numpy(), repeats)
    return seconds


def _net_with(activation, batch_norm: bool = True):
    """A builder of the recipe's net with another activation, or with every BatchNorm an identity (patched here,
    in the benchmark only: the product has no BN-less net)."""
    def build(model_name, images):
        if activation is None:  # the recipe's net with Keras' own BatchNorm, as before the fused kernel
            net = models.build_model(model_name, 10, images.shape[1:])
            airbench_nets.init_airbench_net(net, images[:500])
            return net
        widths = {"airbench": (64, 256, 256), "airbench_medium": (64, 128, 128),
                  "airbench_small": (32, 64, 64)}[model_name.removesuffix("_silu")]
        original = airbench_nets.replica_synced_batch_norm
        if not batch_norm:
            airbench_nets.replica_synced_batch_norm = lambda **kwargs: keras.layers.Identity(name=kwargs["name"])
        try:
            with custom_layers.fused_batch_norm():
                net = airbench_nets.airbench_net(images.shape[1:], 10, widths, activation=activation)
        finally:
            airbench_nets.replica_synced_batch_norm = original
        airbench_nets.init_airbench_net(net, images[:500])
        return net
    return build


_VARIANTS = {"fwd+bwd, Keras' own BatchNorm": _net_with(None),
             "fwd+bwd, GELU": _net_with("gelu"),
             "fwd+bwd, GELU as tanh": _net_with(functools.partial(keras.activations.gelu, approximate=True)),
             "fwd+bwd, SiLU": _net_with("silu"), "fwd+bwd, ReLU": _net_with("relu"),
             "fwd+bwd, no BatchNorm": _net_with("gelu", batch_norm=False)}


def _without_muon(recipe):
    import dataclasses

    return dataclasses.replace(recipe, muon_learning_rate=0.0)


def _gradients_of(net):
    """A compiled function: (images, labels) → the loss's gradients (no update)."""
    import tensorflow as tf

    loss = airbench.smoothed_cross_entropy(0.2)

    @tf.function
    def gradients(x, y):
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss(y, net(x, training=True)))
        return tape.gradient(value, net.trainable_variables)
    return gradients


def _update_of(net, optimizer):
    """A function applying the optimizer's update to the net once, from fixed random gradients."""
    import tensorflow as tf

    gradients = [tf.random.normal(variable.shape) for variable in net.trainable_variables]
    optimizer.build(net.trainable_variables)
    apply = tf.function(lambda: optimizer.apply(gradients, net.trainable_variables))
    return lambda: (apply(), net.trainable_variables[0].numpy())


def _newton_schulz_on(net):
    """A function running the optimizer's orthogonalisation on an update of every filter bank's shape."""
    import tensorflow as tf

    kernels = [variable for variable in net.trainable_variables if len(variable.shape) == 4]
    updates = [tf.random.normal((shape[3], shape[0] * shape[1] * shape[2]))
               for shape in (tuple(kernel.shape) for kernel in kernels)]
    step = tf.function(lambda: [optim.orthogonalise(update) for update in updates])
    return lambda: [value.numpy() for value in step()]


def _convolutions_on(net, inputs, labels):
    """fwd+bwd of the net's convolutions and pools only (same shapes, no BN, activations or whitening)."""
    import tensorflow as tf

    convolutions = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    kernels = [tf.Variable(tf.cast(layer.kernel, keras.mixed_precision.global_policy().compute_dtype))
               for layer in convolutions]
    x0 = tf.cast(tf.tile(inputs[..., :1], (1, 1, 1, 24)), kernels[0].dtype)  # the whitening's 24 channels

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            x = x0
            for index, kernel in enumerate(kernels):
                x = tf.nn.conv2d(x, kernel, 1, "SAME")
                if index % 2 == 0:
                    x = tf.nn.max_pool2d(x, 2, 2, "VALID")
            value = tf.reduce_sum(tf.cast(x, tf.float32))
        return tape.gradient(value, kernels)
    return lambda: step()[0].numpy()


def table(seconds: dict, recipe, flops: float) -> str:
    full = seconds["step"]
    lines = ["| part | ms per batch | share of the step |", "|---|---:|---:|"]
    for part in PARTS:
        lines.append(f"| {part} | {seconds[part] * 1000:,.0f} | {seconds[part] / full:.0%} |")
    images_per_s = recipe.batch_size / full
    lines.append(f"\nstep: {images_per_s:,.1f} images/s, {3 * flops * images_per_s / 1e9:,.1f} GFLOP/s "
                 f"(3 x {flops / 1e6:,.0f} MFLOP forward per image)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=recipes.DEFAULT)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="recipe settings")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    if not backends.is_tensorflow():
        raise SystemExit("profile_step.py profiles TensorFlow's step (KERAS_BACKEND=tensorflow)")
    recipe = recipes.get_recipe(arguments.recipe, **recipes.parse_settings(arguments.recipe, arguments.set))
    chosen = precision.resolve_precision(recipe.mixed_precision)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "all"), os.environ.get("XLA_FLAGS", "")
    print(f"{os.cpu_count()} cores, {machine.cpu_name()}; recipe {recipe.name}, batch {recipe.batch_size}, "
          f"precision {chosen}, jit {recipe.jit_compile}, ONEDNN_MAX_CPU_ISA={isa[0]} {isa[1]}".rstrip(), flush=True)
    with precision.dtype_policy(chosen):
        seconds = measure_parts(recipe, arguments.repeats)
        flops = models.forward_flops(models.build_model(recipe.model, 10, (32, 32, 3)))
    print(table(seconds, recipe, flops), flush=True)


if __name__ == "__main__":
    main()
