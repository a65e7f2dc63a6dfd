"""Trains a few airbench steps on the Keras backend in KERAS_BACKEND, for tests/test_backends.py; not a test.

    KERAS_BACKEND=jax python backend_worker.py DATA START_WEIGHTS OUT_NPZ [--no-tensorflow]
    KERAS_BACKEND=jax python backend_worker.py --resume DATA OUT_DIR [--no-tensorflow]

Builds airbench_small, loads START_WEIGHTS (written by the test, so every backend starts from the same
numbers), runs `airbench.fit` for 2 short epochs (Lookahead, the whitening-bias freeze and both flips inside
them), and saves the trained weights and the float32 inference model's probabilities on the test images.
--resume trains the same recipe through `training.run.train` twice, once whole and once interrupted after its
first epoch and resumed, and prints {"epochs_after_resume", "history_epochs", "max_weight_difference"}.
--no-tensorflow makes `import tensorflow` fail first, as on a machine without it.
"""

import sys

if "--no-tensorflow" in sys.argv:
    import no_tensorflow  # noqa: F401

import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from imagerec import data, models  # noqa: E402
from imagerec.training import airbench, distribute, recipes, run  # noqa: E402
from imagerec.training.context import FitContext  # noqa: E402

# float32 and SGD: the comparison is of the backends, to float rounding. Muon is left out because it
# normalises each update's size, so rounding-level differences in near-zero filter gradients become
# visible ones within a few steps, on any two machines alike.
RECIPE = recipes.get_recipe("airbench_small", epochs=2, batch_size=32, whiten_bias_epochs=1,
                            lookahead_start_epoch=0, lookahead_every=2, mixed_precision="off",
                            muon_learning_rate=0.0)


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt  # like Ctrl-C, just after the epoch's backup


class _EpochLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def resume(data_path: str, out: str) -> None:
    dataset = data.load_dataset(data_path)
    whole = run.train(dataset, RECIPE, f"{out}/whole", seed=3, verbose=0, report=False)
    try:
        run.train(dataset, RECIPE, f"{out}/cut", seed=3, verbose=0, report=False, callbacks=[_StopAfterFirstEpoch()])
    except KeyboardInterrupt:
        pass
    log = _EpochLog()
    resumed = run.train(dataset, RECIPE, f"{out}/cut", seed=3, verbose=0, report=False, resume=True, callbacks=[log])
    difference = max(float(np.max(np.abs(a - b))) for a, b in
                     zip(whole.model.keras_model.get_weights(), resumed.model.keras_model.get_weights()))
    print(json.dumps({"epochs_after_resume": log.epochs, "max_weight_difference": difference,
                      "history_epochs": [record["epoch"] for record in resumed.history]}))


def main() -> None:
    if sys.argv[1] == "--resume":
        return resume(sys.argv[2], sys.argv[3])
    data_path, start_weights, out = sys.argv[1:4]
    dataset = data.load_dataset(data_path)
    net = models.build_model(RECIPE.model, dataset.num_classes, dataset.image_shape)
    net.load_weights(start_weights)
    airbench.fit(net, dataset, RECIPE, FitContext(seed=3, strategy=distribute.make_strategy("auto")))
    probabilities = models.inference_model(net).predict_on_batch(dataset.x_test.astype(np.float32))
    np.savez(out, probabilities=np.asarray(probabilities), *[np.asarray(weight) for weight in net.get_weights()])


if __name__ == "__main__":
    main()
