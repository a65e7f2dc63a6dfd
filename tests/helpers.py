"""What several test modules share: synthetic images that a model can learn, the real command in a subprocess,
a Chromium for the browser tests, and a callback that interrupts a run. Imported by tests (and conftest.py's
fixtures) as `helpers`; pytest's conftest.py holds only fixtures."""

import io
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
from PIL import Image

REPOSITORY = Path(__file__).resolve().parents[1]
CIFAR_JPEG = Path(os.environ.get("IMAGEREC_TEST_DATA", REPOSITORY.parent / "shared/data/cifar10-jpeg.tar.gz"))
SYNTHETIC_CLASSES = ("red_stripes", "green_rings", "blue_checks", "yellow_cross")
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 60, 15  # images per class


def synthetic_image(label: int, rng: np.random.Generator, size=(32, 32)) -> np.ndarray:
    """A uint8 (height, width, 3) image of class `label`: its own colour and pattern, a random phase and
    scale, and pixel noise; any size."""
    height, width = size
    rows, columns = np.mgrid[0:height, 0:width] / max(height, width) * 32
    period, phase = rng.uniform(5, 9), rng.uniform(0, 2 * np.pi)
    patterns = [np.sin(2 * np.pi * rows / period + phase),  # stripes
                np.sin(2 * np.pi * np.hypot(rows - 16, columns - 16) / period + phase),  # rings
                np.sign(np.sin(2 * np.pi * rows / period + phase) * np.sin(2 * np.pi * columns / period)),  # checks
                (np.minimum(abs(rows - 16), abs(columns - 16)) < period / 2) * 2.0 - 1]  # cross
    colours = np.array([[200, 40, 40], [40, 180, 60], [50, 70, 210], [220, 200, 40]], np.float64)
    image = 127 + 0.45 * patterns[label][..., None] * colours[label] + rng.normal(0, 18, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic_folder(root: Path, train_per_class: int = SYNTHETIC_TRAIN, test_per_class: int = SYNTHETIC_TEST,
                           seed: int = 0) -> Path:
    """An image-folder dataset train/<class>/, test/<class>/ of synthetic images: PNG and JPEG, mostly 32x32,
    every seventh an odd size (the loader resizes), a few grayscale."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(SYNTHETIC_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                size = (32, 32) if index % 7 else (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
                image = Image.fromarray(synthetic_image(label, rng, size))
                if index % 11 == 5:
                    image = image.convert("L")
                suffix = ".png" if index % 2 else ".jpg"
                image.save(folder / f"{index:03d}{suffix}", quality=90)
    return root


PHOTO_TRAIN = (48, 32, 20, 12)  # a skewed class balance: images per class, in SYNTHETIC_CLASSES order
PHOTO_SIZES = ((96, 72), (72, 96), (120, 90), (80, 80), (150, 100))  # (width, height): several aspect ratios


def write_photo_folder(root: Path, train_counts=PHOTO_TRAIN, test_per_class: int = 8, seed: int = 1) -> Path:
    """Synthetic "photos": larger than CIFAR-10, several sizes and aspect ratios, PNG, JPEG and WebP, and a
    skewed class balance (`train_counts` per class; `test_per_class` each in test/)."""
    rng = np.random.default_rng(seed)
    for split, counts in (("train", train_counts), ("test", [test_per_class] * len(train_counts))):
        for label, (name, count) in enumerate(zip(SYNTHETIC_CLASSES, counts)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                width, height = PHOTO_SIZES[index % len(PHOTO_SIZES)]
                image = Image.fromarray(synthetic_image(label, rng, (height, width)))
                image.save(folder / f"{index:03d}{('.jpg', '.png', '.webp')[index % 3]}", quality=90)
    return root


def chromium_path():
    """Debian's chromium (what .ci/run installs), or IMAGEREC_CHROMIUM; None when there is none."""
    import shutil

    return os.environ.get("IMAGEREC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def run_cli(*arguments, timeout=600, env=None):
    """Run the real `imagerec` command in a subprocess; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "imagerec", *map(str, arguments)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def modules_imported_by(code: str) -> set:
    """The top-level packages a fresh Python has imported after running `code`."""
    probe = code + "\nimport sys; print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.strip().splitlines()[-1].split())  # the last line: what `code` printed comes before


def train_cli(data, run_dir, recipe: str, epochs: int, *options, cache_dir=None):
    """A real `imagerec train` of `recipe` for `epochs` on `data` into `run_dir`; asserts it succeeded."""
    result = run_cli("train", "--recipe", recipe, "--data", data, "--out", run_dir, "--epochs", epochs, *options,
                     *(("--cache-dir", cache_dir) if cache_dir else ()))
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(run_dir)


class StopAfterFirstEpoch(keras.callbacks.Callback):
    """Interrupts training after the first epoch's backup, as Ctrl-C would."""

    def on_epoch_end(self, epoch, logs=None):  # runs after BackupAndRestore has written the epoch's backup
        raise KeyboardInterrupt


# ---------------------------------------------------------------- small image files of every kind

def save_image(path: Path, image: Image.Image, format_name=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=format_name)


def solid_rgb(color, size=(32, 32)):
    return Image.new("RGB", size, color)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def write_mixed_tree(root: Path) -> Path:
    """Two classes of images in every common format, mode and size, plus a truncated and a non-image file."""
    red, blue = root / "train" / "red", root / "train" / "blue"
    save_image(red / "a.jpg", solid_rgb((255, 0, 0)))
    save_image(red / "b.png", solid_rgb((250, 0, 0), (64, 48)))
    save_image(red / "c.webp", solid_rgb((240, 10, 10), (17, 90)))
    save_image(red / "d.bmp", solid_rgb((255, 5, 0)))
    save_image(blue / "e.png", solid_rgb((0, 0, 255)).convert("P"))  # palette
    save_image(blue / "f.png", Image.new("L", (40, 40), 80))  # grayscale
    save_image(blue / "g.png", Image.new("RGBA", (32, 32), (0, 0, 255, 255)))
    save_image(blue / "h.tif", solid_rgb((0, 0, 250)).convert("CMYK"), "TIFF")
    jpeg = io.BytesIO()
    solid_rgb((0, 0, 255)).save(jpeg, format="JPEG")
    (blue / "truncated.jpg").write_bytes(jpeg.getvalue()[:200])
    (red / "notes.txt").write_text("not an image")
    (red / ".DS_Store").write_bytes(b"\0\1")  # hidden files are not data
    for name, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        save_image(root / "test" / name / "t.png", solid_rgb(color))
    return root


def write_tree_of(root: Path, sizes, per_class: int = 3, test: bool = True) -> Path:
    """Two classes ("a", "b") of random JPEGs, `per_class` each, cycling through `sizes` (width, height)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test") if test else ("train",):
        for name in ("a", "b"):
            for index in range(per_class):
                size = sizes[index % len(sizes)]
                pixels = rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
                save_image(root / split / name / f"{index}.jpg", Image.fromarray(pixels))
    return root


PLANTED_CLASSES = ("red", "green", "blue")
PLANTED_COLOURS = np.array([[200, 50, 50], [50, 180, 60], [50, 70, 210]], np.float64)


def distinct_image(label: int, rng: np.random.Generator, size=(32, 32)) -> np.ndarray:
    """A uint8 image of class `label` (its colour) over a random smooth field of its own: easy to learn, and
    no two alike (unlike `synthetic_image`'s periodic patterns, which look like copies of each other to a
    perceptual hash), with pixel noise enough to be sharp by cleanvision's edge score."""
    field = np.asarray(Image.fromarray(rng.integers(0, 256, (5, 5), dtype=np.uint8)).resize(
        (size[1], size[0]), Image.Resampling.BICUBIC), np.float64) / 255 - 0.5
    image = 0.7 * PLANTED_COLOURS[label] + 70 * field[..., None] + 30 + rng.normal(0, 14, (*size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_planted_tree(root: Path, train_per_class: int = 40, test_per_class: int = 12, seed: int = 0) -> dict:
    """An easy three-class tree (PNG files, 32x32) with one of each problem the doctor looks for planted in it;
    returns {kind: [(path relative to root, duplicate_of or None)]}."""
    rng = np.random.default_rng(seed)
    pictures = {}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(PLANTED_CLASSES):
            for index in range(count):
                pictures[f"{split}/{name}/{index:03d}.png"] = distinct_image(label, rng)
    planted = {"label": [], "exact_duplicate": [], "near_duplicate": [], "leak": []}
    for index, (source, target) in enumerate((("red", "green"), ("green", "blue"), ("blue", "red"))):
        pixels = pictures.pop(f"train/{source}/{index:03d}.png")  # a red image filed under green, ...
        pictures[f"train/{target}/relabelled_{index}.png"] = pixels
        planted["label"].append((f"train/{target}/relabelled_{index}.png", None))
    pictures["train/green/copy_of_010.png"] = pictures["train/green/010.png"]
    planted["exact_duplicate"].append(("train/green/copy_of_010.png", "train/green/010.png"))
    pictures["train/blue/shifted_011.png"] = np.roll(pictures["train/blue/011.png"], 1, axis=1)
    planted["near_duplicate"].append(("train/blue/shifted_011.png", "train/blue/011.png"))
    pictures["test/red/from_train_012.png"] = pictures["train/red/012.png"]
    planted["leak"].append(("test/red/from_train_012.png", "train/red/012.png"))
    pictures["test/blue/recoloured_013.png"] = np.clip(pictures["train/blue/013.png"] * 1.1 + 8, 0, 255).astype(np.uint8)
    planted["leak"].append(("test/blue/recoloured_013.png", "train/blue/013.png"))
    pictures["train/red/blank.png"] = np.full((32, 32, 3), 140, np.uint8)
    pictures["train/green/dark.png"] = (distinct_image(1, rng) * 0.15).astype(np.uint8)
    for path, pixels in pictures.items():
        save_image(root / path, Image.fromarray(pixels))
    save_image(root / "train/blue/tiny.png", Image.fromarray(distinct_image(2, rng, (6, 6))))
    (root / "train/red/corrupt.png").write_bytes(png_bytes(distinct_image(0, rng))[:60])
    planted.update(blank=[("train/red/blank.png", None)], dark=[("train/green/dark.png", None)],
                   odd_size=[("train/blue/tiny.png", None)], unreadable=[("train/red/corrupt.png", None)])
    return planted


SHAPE_SIDE = 10  # the object of `shape_task`


def shape_task(count: int, seed: int, size: int = 32):
    """(images, labels, boxes): a white filled square (class 0) or a white X (class 1), SHAPE_SIDE px, at a random
    place on coloured noise; boxes (N, 2) are each shape's top-left corner. Where the class is decided is known."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 140, (count, size, size, 3)).astype(np.uint8)
    labels = rng.integers(0, 2, count).astype(np.int32)
    boxes = rng.integers(0, size - SHAPE_SIDE + 1, (count, 2))
    index = np.arange(SHAPE_SIDE)
    for image, label, (top, left) in zip(images, labels, boxes):
        patch = image[top:top + SHAPE_SIDE, left:left + SHAPE_SIDE]
        if label == 0:
            patch[:] = 255
        else:
            for shift in (0, 1):  # two pixels wide
                rows = np.clip(index + shift, 0, SHAPE_SIDE - 1)
                patch[rows, index] = 255
                patch[rows, SHAPE_SIDE - 1 - index] = 255
    return images, labels, boxes


def share_on_shape(maps: np.ndarray, boxes: np.ndarray, margin: int = 2) -> float:
    """Share of heatmaps (N, H, W) whose maximum lies on the shape of `shape_task` (within `margin` px)."""
    rows, columns = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
    return float(((rows >= boxes[:, 0] - margin) & (rows < boxes[:, 0] + SHAPE_SIDE + margin)
                  & (columns >= boxes[:, 1] - margin) & (columns < boxes[:, 1] + SHAPE_SIDE + margin)).mean())


def watched_page(browser):
    """(a new page, the console errors and page errors it records): what every page test checks is empty."""
    page, problems = browser.new_page(), []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page, problems
