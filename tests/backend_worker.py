"""Trains a few airbench steps on the Keras backend in KERAS_BACKEND, for tests/test_backends.py; not a test.

    KERAS_BACKEND=jax python backend_worker.py DATA START_WEIGHTS OUT_NPZ [--no-tensorflow]

Builds airbench_small, loads START_WEIGHTS (written by the test, so every backend starts from the same
numbers), runs `airbench.fit` for 2 short epochs (Lookahead, the whitening-bias freeze and both flips inside
them), and saves the trained weights and the float32 inference model's probabilities on the test images.
--no-tensorflow makes `import tensorflow` fail first, as on a machine without it.
"""

import sys

if "--no-tensorflow" in sys.argv:
    import no_tensorflow  # noqa: F401

import numpy as np  # noqa: E402

from imagerec import airbench, data, distribute, models, recipes  # noqa: E402

RECIPE = recipes.get_recipe("airbench_small", epochs=2, batch_size=32, whiten_bias_epochs=1,
                            lookahead_start_epoch=0, lookahead_every=2, mixed_precision="off")


def main() -> None:
    data_path, start_weights, out = sys.argv[1:4]
    dataset = data.load_dataset(data_path)
    net = models.build_model(RECIPE.model, dataset.num_classes, dataset.image_shape)
    net.load_weights(start_weights)
    airbench.fit(net, dataset, RECIPE, seed=3, strategy=distribute.make_strategy("auto"), verbose=0)
    probabilities = models.inference_model(net).predict_on_batch(dataset.x_test.astype(np.float32))
    np.savez(out, probabilities=np.asarray(probabilities), *[np.asarray(weight) for weight in net.get_weights()])


if __name__ == "__main__":
    main()
