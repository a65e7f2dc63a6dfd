"""Benchmark: training throughput of a model on this machine (synthetic data, no accuracy).

    python benchmarks/throughput.py --model fast --batch-size 1024 --steps 6

Times training steps after a warm-up (XLA compilation excluded) and prints images/s and achieved GFLOP/s
(training ≈ 3 forward passes per image). Use it to choose widths and batch sizes before a long run.
"""

import argparse
import os
import time

import keras
import numpy as np

from imagerec import models, recipes, train


def measure(model_name: str, batch_size: int, steps: int, jit: bool) -> dict:
    keras.utils.set_random_seed(0)
    net = models.build_model(model_name, 10)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * 2, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch_size * 2).astype(np.int32)
    models.init_fast_net(net, images[:500])
    recipe = recipes.get_recipe("fast", model=model_name, batch_size=batch_size)
    trainer = train.FastTrainer(net, recipe)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.85, nesterov=True), jit_compile=jit)
    stream = train.fast_batches(images, labels, batch_size, steps + 2, 0, 2, True).repeat()
    iterator = iter(stream)
    trainer.train_on_batch(*next(iterator))  # compile
    trainer.train_on_batch(*next(iterator))
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_on_batch(*next(iterator))
    seconds = time.perf_counter() - started
    flops = models.forward_flops(net)
    images_per_s = steps * batch_size / seconds
    return {"model": model_name, "batch_size": batch_size, "jit": jit, "images_per_s": round(images_per_s, 1),
            "gflops": round(3 * flops * images_per_s / 1e9, 1), "forward_mflops": round(flops / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["fast"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1024])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-jit", action="store_true")
    arguments = parser.parse_args()
    print(f"{os.cpu_count()} cores")
    for model_name in arguments.model:
        for batch_size in arguments.batch_size:
            print(measure(model_name, batch_size, arguments.steps, not arguments.no_jit), flush=True)


if __name__ == "__main__":
    main()
