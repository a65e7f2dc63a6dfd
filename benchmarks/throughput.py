"""Benchmark: training throughput of a model on this machine (synthetic data, no accuracy).

    python benchmarks/throughput.py --model airbench airbench_medium airbench_small --jit off on --policy float32 mixed_bfloat16
    python benchmarks/throughput.py --model airbench airbench_small --image-size 32 64 128 --batch-size 256
    python benchmarks/throughput.py --model mobilenet_v3_small --image-size 128 --batch-size 32 --policy mixed_bfloat16

Times training steps after a warm-up (compilation excluded) and prints images/s and achieved GFLOP/s
(training ≈ 3 forward passes per image), for every combination of the options: with and without XLA, in
float32 or a Keras mixed-precision policy. Use it to choose widths, batch sizes and settings before a long
run; each combination runs in its own process, so policies and compiled graphs do not leak between them.
The Keras backend is $KERAS_BACKEND's (tensorflow by default), e.g. KERAS_BACKEND=jax for XLA via JAX.
A Keras Applications backbone (`models.BACKBONES`) is timed as the finetune recipe trains it, in both phases:
"head" (backbone frozen) and "finetune" (its top `unfreeze_layers` layers trainable), with Adam.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np

from imagerec import machine, models
from imagerec.models import layers as custom_layers
from imagerec.training import airbench, finetune, recipes


def measure(model_name: str, batch_size: int, steps: int, jit: bool, policy: str = "float32",
            image_size: int = 32) -> dict:
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    with custom_layers.fused_batch_norm():  # as training builds its nets
        net = models.build_model(model_name, 10, (image_size, image_size, 3))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * 2, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch_size * 2).astype(np.int32)
    if model_name in models.BACKBONES:
        return measure_backbone(net, images, labels, steps, jit, policy, image_size)
    models.init_airbench_net(net, images[:500])
    recipe = recipes.get_recipe("airbench", model=model_name, batch_size=batch_size, jit_compile=jit)
    trainer = airbench.compiled_trainer(net, recipe, steps_per_epoch=2)
    iterator = iter(airbench.airbench_batches(images, labels, batch_size, steps + 2, 0, 2, True))
    trainer.train_on_batch(*next(iterator))  # compile
    trainer.train_on_batch(*next(iterator))
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_on_batch(*next(iterator))
    seconds = time.perf_counter() - started
    flops = models.forward_flops(net)
    images_per_s = steps * batch_size / seconds
    return {"model": model_name, "image_size": image_size, "batch_size": batch_size, "jit": jit, "policy": policy,
            "images_per_s": round(images_per_s, 1), "gflops": round(3 * flops * images_per_s / 1e9, 1),
            "forward_mflops": round(flops / 1e6, 1)}


def measure_backbone(net, images, labels, steps: int, jit: bool, policy: str, image_size: int) -> dict:
    """Images/s of each finetune phase (training FLOPs: ~1x forward for the frozen backbone in phase 1 plus
    the head, ~3x for phase 2's trainable top; GFLOP/s is given against 3x forward as an upper bound)."""
    recipe = recipes.get_recipe("finetune")
    result = {"model": net.name, "image_size": image_size, "batch_size": len(labels) // 2, "jit": jit,
              "policy": policy, "forward_mflops": round(models.forward_flops(net) / 1e6, 1)}
    for phase, unfrozen in (("head", 0), ("finetune", recipe.unfreeze_layers)):
        finetune.unfreeze_top(net.get_layer(models.BACKBONE_LAYER), unfrozen)
        net.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", jit_compile=jit)
        half = len(labels) // 2
        net.train_on_batch(images[:half], labels[:half])  # compile
        started = time.perf_counter()
        for step in range(steps):
            part = slice((step % 2) * half, (step % 2 + 1) * half)
            net.train_on_batch(images[part], labels[part])
        result[f"{phase}_images_per_s"] = round(steps * half / (time.perf_counter() - started), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["airbench"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1024])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--jit", nargs="+", choices=["on", "off"], default=["off"], help="XLA compilation")
    parser.add_argument("--policy", nargs="+", default=["float32"], help="Keras dtype policies, e.g. mixed_bfloat16")
    parser.add_argument("--image-size", type=int, nargs="+", default=[32], help="square input sides in pixels")
    parser.add_argument("--one", nargs=6, metavar=("MODEL", "BATCH", "STEPS", "JIT", "POLICY", "SIZE"),
                        help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:  # a single measurement, in this (child) process
        model_name, batch_size, steps, jit, policy, image_size = arguments.one
        print(json.dumps(measure(model_name, int(batch_size), int(steps), jit == "on", policy, int(image_size))),
              flush=True)
        return
    print(f"{os.cpu_count()} cores, {machine.cpu_name()}", flush=True)
    for model_name, batch_size, jit, policy, image_size in itertools.product(
            arguments.model, arguments.batch_size, arguments.jit, arguments.policy, arguments.image_size):
        child = subprocess.run([sys.executable, __file__, "--one", model_name, str(batch_size),
                                str(arguments.steps), jit, policy, str(image_size)], capture_output=True, text=True)
        lines = child.stdout.strip().splitlines()
        print(lines[-1] if child.returncode == 0 and lines else
              f"{model_name} batch {batch_size} jit {jit} {policy}: failed: {child.stderr.strip()[-300:]}", flush=True)


if __name__ == "__main__":
    main()
