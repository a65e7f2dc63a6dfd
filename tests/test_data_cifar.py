"""CIFAR-10's python pickles (without running their code) and Keras' download."""

import io
import pickle
import tarfile

import numpy as np
import pytest

from imagerec import data
from imagerec.errors import UserError


def _cifar_pickle_files(rng) -> dict:
    """A tiny archive in the official cifar-10-python format: 2 train batches of 6, a test batch of 4."""
    def batch(count):
        return pickle.dumps({b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                             b"labels": [index % 3 for index in range(count)]}, protocol=2)

    meta = pickle.dumps({b"label_names": [b"apple", b"pear", b"plum"]}, protocol=2)
    return {"data_batch_1": batch(6), "data_batch_2": batch(6), "test_batch": batch(4), "batches.meta": meta}


def test_official_cifar_pickle_archive_and_folder(tmp_path):
    files = _cifar_pickle_files(np.random.default_rng(0))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    archive_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    for source in (folder, archive_path):
        dataset = data.load_dataset(str(source), cache_dir=tmp_path / "cache")
        assert dataset.class_names == ("apple", "pear", "plum")
        assert dataset.x_train.shape == (12, 32, 32, 3) and dataset.x_test.shape == (4, 32, 32, 3)
        original = np.frombuffer(pickle.loads(files["test_batch"], encoding="bytes")[b"data"][0], np.uint8)
        np.testing.assert_array_equal(dataset.x_test[0], original.reshape(3, 32, 32).transpose(1, 2, 0))


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    files = _cifar_pickle_files(np.random.default_rng(0))
    files["test_batch"] = pickle.dumps({b"data": _Exploit(), b"labels": [0]}, protocol=2)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    with pytest.raises(UserError, match="refusing to load"):
        data.load_dataset(str(folder))


def test_keras_download_failure_is_one_clear_error(monkeypatch, tmp_path):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://example/cifar-10-python.tar.gz: None -- Name or service not known")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(UserError) as raised:
        data.load_dataset("cifar10")
    message = str(raised.value)
    assert "`data`" in message and "cifar-10-batches-py-target_archive" in message and "\n" not in message


def test_a_cifar_pickle_archive_bomb_is_refused_before_reading_into_memory(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        for name, size in (("batches.meta", 10), ("test_batch", 10), ("data_batch_1", 50 * 10**6)):
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = size
            handle.addfile(member, io.BytesIO(bytes(size)))
    with pytest.raises(UserError, match="over the limit"):
        data.load_dataset(str(archive), cache_dir=tmp_path / "cache")
