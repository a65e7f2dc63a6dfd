"""Shared fixtures: a learnable synthetic image folder made here, an isolated cache, real CLI training runs.

The unit tests need nothing outside the repository. Tests marked `integration` also read a few hundred real
CIFAR-10 images from the JPEG copy (IMAGEREC_TEST_DATA, default ../shared/data/cifar10-jpeg.tar.gz): without
it they are skipped, except under CI (CI=1, set by .ci/run), where a missing copy is a failure.
"""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPOSITORY = Path(__file__).resolve().parents[1]
CIFAR_JPEG = Path(os.environ.get("IMAGEREC_TEST_DATA", REPOSITORY.parent / "shared/data/cifar10-jpeg.tar.gz"))
TRAIN_PER_CLASS, TEST_PER_CLASS = 30, 10
SYNTHETIC_CLASSES = ("red_stripes", "green_rings", "blue_checks", "yellow_cross")
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 60, 15  # images per class

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs the CIFAR-10 JPEG copy outside the repository")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test decodes into its own cache, never the user's ~/.cache/imagerec."""
    monkeypatch.setenv("IMAGEREC_CACHE", str(tmp_path_factory.mktemp("cache")))


# ---------------------------------------------------------------- synthetic images

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


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """`write_photo_folder`: 4 classes of 48/32/20/12 training images at 72-150 px, 8 test images each."""
    return write_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """A learnable synthetic image folder: 4 classes, 60 train and 15 test images each (300 in all)."""
    return write_synthetic_folder(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def dataset(image_folder):
    """The synthetic image folder, loaded (32x32 uint8)."""
    from imagerec import data

    return data.load_dataset(str(image_folder), progress=False, cache_dir=image_folder.parent / "cache")


# ---------------------------------------------------------------- real CIFAR-10 images (integration tests)

@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory) -> Path:
    """An image-folder tree with 30 train and 10 test real CIFAR-10 JPEGs per class (400 images)."""
    if not CIFAR_JPEG.is_file():
        message = f"the CIFAR-10 JPEG copy is not at {CIFAR_JPEG} (set IMAGEREC_TEST_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI runs the integration tests")
        pytest.skip(message)
    root = tmp_path_factory.mktemp("cifar-subset")
    wanted, taken = {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS}, {}
    with tarfile.open(CIFAR_JPEG, "r:gz") as archive:
        for member in archive:
            parts = Path(member.name).parts  # cifar10-jpeg/<split>/<class>/<file>
            if not member.isfile() or len(parts) != 4 or parts[1] not in wanted:
                continue
            if taken.get(parts[1:3], 0) < wanted[parts[1]]:
                target = root.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
                taken[parts[1:3]] = taken.get(parts[1:3], 0) + 1
    return root


# ---------------------------------------------------------------- the real command and real runs

def chromium_path():
    """Debian's chromium (what .ci/run installs), or IMAGEREC_CHROMIUM; None when there is none."""
    import shutil

    return os.environ.get("IMAGEREC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def run_cli(*arguments, timeout=600, env=None):
    """Run the real `imagerec` command in a subprocess; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "imagerec", *map(str, arguments)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def seed_run(image_folder, tmp_path_factory) -> Path:
    """One real end-to-end `imagerec train` of the seed recipe (1 plain + 1 augmented epoch), synthetic data."""
    run_dir = tmp_path_factory.mktemp("runs") / "seed"
    result = run_cli("train", "--recipe", "seed", "--data", image_folder, "--out", run_dir, "--epochs", 2,
                     "--set", "augmented_epochs=1", "--cache-dir", tmp_path_factory.mktemp("seed-cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def airbench_run(image_folder, tmp_path_factory) -> Path:
    """One real end-to-end `imagerec train --recipe airbench_small` (3 epochs, batch 32), synthetic data."""
    run_dir = tmp_path_factory.mktemp("runs") / "airbench"
    result = run_cli("train", "--recipe", "airbench_small", "--data", image_folder, "--out", run_dir, "--epochs", 3,
                     "--set", "batch_size=32", "--cache-dir", tmp_path_factory.mktemp("airbench-cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def photo_run(photo_folder, tmp_path_factory) -> Path:
    """A real `imagerec train --image-size 64` of airbench_small (6 epochs, batch 16) on `photo_folder`."""
    run_dir = tmp_path_factory.mktemp("runs") / "photos"
    result = run_cli("train", "--recipe", "airbench_small", "--data", photo_folder, "--image-size", 64, "--out", run_dir,
                     "--epochs", 6, "--set", "batch_size=16", "--cache-dir", tmp_path_factory.mktemp("photo-cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB file system (tmpfs) to fill up: a full disk as it happens. Needs root (mount); skipped
    elsewhere."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
