"""Shared fixtures: a few hundred real CIFAR-10 images, an isolated cache, one real CLI training run."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
CIFAR_JPEG = Path(os.environ.get("IMAGEREC_TEST_DATA", REPOSITORY.parent / "shared/data/cifar10-jpeg.tar.gz"))
TRAIN_PER_CLASS, TEST_PER_CLASS = 30, 10

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test decodes into its own cache, never the user's ~/.cache/imagerec."""
    monkeypatch.setenv("IMAGEREC_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory) -> Path:
    """An image-folder tree with 30 train and 10 test real CIFAR-10 JPEGs per class (400 images)."""
    if not CIFAR_JPEG.is_file():
        pytest.skip(f"the CIFAR-10 JPEG copy is not at {CIFAR_JPEG} (set IMAGEREC_TEST_DATA)")
    root = tmp_path_factory.mktemp("cifar-subset")
    wanted = {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS}
    taken = {}
    with tarfile.open(CIFAR_JPEG, "r:gz") as archive:
        for member in archive:
            parts = Path(member.name).parts  # cifar10-jpeg/<split>/<class>/<file>
            if not member.isfile() or len(parts) != 4 or parts[1] not in wanted:
                continue
            key = parts[1:3]
            if taken.get(key, 0) < wanted[parts[1]]:
                target = root.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
                taken[key] = taken.get(key, 0) + 1
    return root


def chromium_path():
    """Debian's chromium (what .ci/run installs), or IMAGEREC_CHROMIUM; None when there is none."""
    import shutil

    return os.environ.get("IMAGEREC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def run_cli(*arguments, timeout=600, env=None):
    """Run the real `imagerec` command in a subprocess; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "imagerec", *map(str, arguments)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def seed_run(cifar_subset, tmp_path_factory) -> Path:
    """One real end-to-end `imagerec train` of the seed recipe (1 plain + 1 augmented epoch)."""
    run_dir = tmp_path_factory.mktemp("runs") / "seed"
    cache = tmp_path_factory.mktemp("seed-cache")
    result = run_cli("train", "--recipe", "seed", "--data", cifar_subset, "--out", run_dir, "--epochs", 1,
                     "--aug-epochs", 1, "--cache-dir", cache)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def fast_run(cifar_subset, tmp_path_factory) -> Path:
    """One real end-to-end `imagerec train --recipe fast_small` (2 epochs, batch 64)."""
    run_dir = tmp_path_factory.mktemp("runs") / "fast"
    cache = tmp_path_factory.mktemp("fast-cache")
    result = run_cli("train", "--recipe", "fast_small", "--data", cifar_subset, "--out", run_dir, "--epochs", 2,
                     "--batch-size", 64, "--cache-dir", cache)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
