"""One worker of the two-process multi-worker test (tests/test_distribute.py); not a test itself.

    python multiworker_worker.py DATA OUT  (TF_CONFIG set by the test)

Trains a short airbench_small run through the public API under MultiWorkerMirroredStrategy and prints the
SHA-256 of its final weights, so the test can check that every worker ends with the same model.
"""

import hashlib
import sys

import numpy as np

from imagerec import data
from imagerec.training import distribute, recipes, run


def main() -> None:
    data_path, out = sys.argv[1], sys.argv[2]
    strategy = distribute.make_strategy("multiworker")  # first: before any other TensorFlow work
    dataset = data.load_dataset(data_path)
    recipe = recipes.get_recipe("airbench_small", epochs=2, batch_size=64)
    result = run.train(dataset, recipe, out, seed=0, verbose=0, strategy=strategy, report=False)
    weights = result.model.keras_model.get_weights()
    digest = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in weights)).hexdigest()
    print(f"replicas={strategy.num_replicas_in_sync} chief={distribute.is_chief(strategy)} weights={digest}", flush=True)


if __name__ == "__main__":
    main()
