"""Shared fixtures: a learnable synthetic image folder made here, an isolated cache, real CLI training runs
(helpers they are made with, and that tests import, are in helpers.py).

The unit tests need nothing outside the repository. Tests marked `integration` also read a few hundred real
CIFAR-10 images from the JPEG copy (IMAGEREC_TEST_DATA, default ../shared/data/cifar10-jpeg.tar.gz): without
it they are skipped, except under CI (CI=1, set by .ci/run), where a missing copy is a failure.
"""

import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from serve_helpers import READ_TIMEOUT_S, free_port
from helpers import CIFAR_JPEG, train_cli, write_mixed_tree, write_photo_folder, write_synthetic_folder

TRAIN_PER_CLASS, TEST_PER_CLASS = 30, 10  # real CIFAR-10 images per class in `cifar_subset`

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs the CIFAR-10 JPEG copy outside the repository")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test decodes into its own cache, never the user's ~/.cache/imagerec."""
    monkeypatch.setenv("IMAGEREC_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """`write_photo_folder`: 4 classes of 48/32/20/12 training images at 72-150 px, 8 test images each."""
    return write_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """A learnable synthetic image folder: 4 classes, 60 train and 15 test images each (300 in all)."""
    return write_synthetic_folder(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def mixed_tree(tmp_path) -> Path:
    """`write_mixed_tree`: two classes in every common format, mode and size, a truncated and a non-image file."""
    return write_mixed_tree(tmp_path / "tree")


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

# Real end-to-end `imagerec train` runs, each made once per session by one factory (`_trained`): the recipe,
# its epochs and extra options. Tests that only read a run share these.
RUNS = {
    "seed_run": ("seed", 2, ("--set", "augmented_epochs=1")),  # 1 plain + 1 augmented epoch
    "airbench_run": ("airbench_small", 3, ("--set", "batch_size=32")),
    "photo_run": ("airbench_small", 6, ("--image-size", 64, "--set", "batch_size=16")),
}


def _trained(name: str, data: Path, tmp_path_factory) -> Path:
    recipe, epochs, options = RUNS[name]
    return train_cli(data, tmp_path_factory.mktemp("runs") / name, recipe, epochs, *options,
                     cache_dir=tmp_path_factory.mktemp(f"{name}-cache"))


@pytest.fixture(scope="session")
def seed_run(image_folder, tmp_path_factory) -> Path:
    """`imagerec train --recipe seed` (1 plain + 1 augmented epoch) on the synthetic folder."""
    return _trained("seed_run", image_folder, tmp_path_factory)


@pytest.fixture(scope="session")
def airbench_run(image_folder, tmp_path_factory) -> Path:
    """`imagerec train --recipe airbench_small` (3 epochs, batch 32) on the synthetic folder."""
    return _trained("airbench_run", image_folder, tmp_path_factory)


@pytest.fixture(scope="session")
def photo_run(photo_folder, tmp_path_factory) -> Path:
    """`imagerec train --image-size 64` of airbench_small (6 epochs, batch 16) on `photo_folder`."""
    return _trained("photo_run", photo_folder, tmp_path_factory)


# ---------------------------------------------------------------- a model to serve, in-process and for real

@pytest.fixture(scope="session")
def classifier(airbench_run):
    """The airbench run's model, loaded as `imagerec serve` loads it."""
    from imagerec.artefacts import loading

    return loading.load_model(airbench_run)


@pytest.fixture(scope="session")
def app(classifier):
    """The serving app for `classifier`, driven in-process (serve_helpers.request)."""
    from imagerec.serve.app import create_app

    return create_app(classifier, "cifar10")


@pytest.fixture(scope="session")
def live_server(airbench_run):
    """`imagerec serve` of the airbench run in a subprocess, on a free port, with a short read timeout, and TF
    Serving's gRPC API on another (the URL's `.grpc`: "127.0.0.1:PORT")."""
    port, grpc_port = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "imagerec", "serve", str(airbench_run), "--port", str(port),
                               "--grpc-port", str(grpc_port), "--read-timeout-s", str(READ_TIMEOUT_S)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.grpc = f"127.0.0.1:{grpc_port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"imagerec serve exited: {server.stdout.read()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("imagerec serve did not answer /healthz within 120 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


class ServerURL(str):
    """The live server's HTTP URL, with its gRPC address as `.grpc`."""

    grpc = None


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
