"""Does a cheap input treatment recover dithered GIFs? Accuracy on test images saved as GIFs, raw and blurred.

    python benchmarks/gif_treatment.py RUN_DIR --data ../shared/data/cifar10-jpeg.tar.gz [--images 1000]

The same stratified test images (seed 0) as benchmarks/robustness.py, at the model's size: clean; as Pillow saves
a GIF by default (`convert("P")`: the web palette, Floyd-Steinberg dithered) and with an adaptive 256-colour
dithered palette; each then blurred (Pillow's GaussianBlur, radius 0.5-1.5) or median-filtered (3x3); and the
clean images blurred alike (what the treatment would cost an image that needed none).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imagerec import workflows  # noqa: E402
from imagerec.evaluation import robustness  # noqa: E402

RADII = (0.5, 0.7, 1.0, 1.5)
PALETTES = {"web": lambda image: image.convert("P"),
            "adaptive256": lambda image: image.quantize(256, dither=Image.Dither.FLOYDSTEINBERG)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--data", default=None)
    parser.add_argument("--images", type=int, default=robustness.DEFAULT_IMAGES)
    arguments = parser.parse_args()
    classifier, dataset = workflows.load_model_and_data(arguments.run, arguments.data)
    rows = robustness.pick_images(dataset.y_test, arguments.images, 0)
    images, labels = dataset.x_test[rows], dataset.y_test[rows]

    def accuracy(batch) -> str:
        return f"{100 * (classifier.predict_proba(batch).argmax(axis=1) == labels).mean():.1f}%"

    def through(batch, transform):
        return np.stack([np.asarray(transform(Image.fromarray(image)).convert("RGB")) for image in batch])

    print(f"clean {accuracy(images)}")
    for radius in RADII:
        print(f"clean, blur {radius}: {accuracy(through(images, lambda im: im.filter(ImageFilter.GaussianBlur(radius))))}")
    for name, palette in PALETTES.items():
        paletted = through(images, palette)
        print(f"{name}: raw {accuracy(paletted)}, median 3x3 "
              f"{accuracy(through(paletted, lambda im: im.filter(ImageFilter.MedianFilter(3))))}")
        for radius in RADII:
            blurred = through(paletted, lambda im: im.filter(ImageFilter.GaussianBlur(radius)))
            print(f"{name}, blur {radius}: {accuracy(blurred)}")


if __name__ == "__main__":
    main()
