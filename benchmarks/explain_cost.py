"""Grad-CAM's cost per image on this CPU, beside the prediction it explains.

    python benchmarks/explain_cost.py RUN_DIR [RUN_DIR ...] [--batch 1 32]

For each model: ms per image of `predict_proba` (the saved model, test-time views and temperature included) and
of Grad-CAM (`models.gradcam.GradCam`: its own forward to the cut, the backward pass, the class from the whole
model), on random 0-255 images of the model's size, after a warm-up call, median of 5 repeats.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imagerec.artefacts import loading  # noqa: E402
from imagerec.models import gradcam  # noqa: E402


def _ms_per_image(work, images, repeats: int = 5) -> float:
    work(images)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work(images)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    for run in arguments.runs:
        classifier = loading.load_model(run)
        explainer = gradcam.GradCam(classifier.keras_model)
        for batch in arguments.batch:
            images = rng.integers(0, 256, (batch, *classifier.input_shape)).astype(np.float32)
            predict = _ms_per_image(classifier.predict_proba, images)
            explain = _ms_per_image(explainer, images)
            print(f"{run}: batch {batch}: predict {predict:.2f} ms/image, Grad-CAM {explain:.2f} ms/image "
                  f"({explain / predict:.1f}x), cut at {explainer.layer_name}", flush=True)


if __name__ == "__main__":
    main()
