"""The decode cache: decoded once into memory maps, reused, invalidated, and never left half-written."""

import numpy as np
import pytest

from imagerec import data
from imagerec.errors import UserError

import hostile_files
from helpers import run_cli, save_image, solid_rgb, write_synthetic_folder, write_tree_of


def test_cache_skips_decoding_and_is_invalidated_by_a_changed_file(mixed_tree, tmp_path, monkeypatch):
    first = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    assert len([path for path in (tmp_path / "cache" / "decoded").iterdir() if not path.name.startswith(".")]) == 1

    def fail(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr("imagerec.data.images.decode_image", fail)
    second = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert second.skipped_count == first.skipped_count
    monkeypatch.undo()
    save_image(mixed_tree / "train" / "red" / "new.png", solid_rgb((255, 0, 0)))
    third = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    assert len(third.y_train) == len(first.y_train) + 1


def test_each_row_knows_its_file_with_skipped_files_left_out(mixed_tree, tmp_path):
    dataset = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    names = dataset.row_names("train")
    assert len(names) == len(dataset.y_train) and "train/blue/truncated.jpg" not in names
    assert names[:4] == ["train/blue/e.png", "train/blue/f.png", "train/blue/g.png", "train/blue/h.tif"]
    assert [dataset.class_names[label] for label in dataset.y_train] == [name.split("/")[1] for name in names]
    assert dataset.row_names("test") == ["test/blue/t.png", "test/red/t.png"]
    assert data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache").row_names("train") == names  # cached
    held = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache", val_split=0.4, hold_out_validation=True)
    assert sorted(held.row_names("train") + held.row_names("validation")) == sorted(names)


def test_folders_are_cached_as_memory_maps_per_size_and_split(tmp_path):
    root = write_tree_of(tmp_path / "tree", [(64, 48)], per_class=5, test=False)
    first = data.load_dataset(str(root), image_size=48, cache_dir=tmp_path / "cache", val_split=0.4)
    assert isinstance(first.x_train, np.memmap) and not first.x_train.flags.writeable
    assert first.x_train.shape == (6, 48, 48, 3) and first.x_test.shape == (4, 48, 48, 3)
    folders = lambda: sorted(path.name for path in (tmp_path / "cache" / "decoded").iterdir())  # noqa: E731
    assert len(folders()) == 1 and {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "meta.json"} <= {
        path.name for path in (tmp_path / "cache" / "decoded" / folders()[0]).iterdir()}
    data.load_dataset(str(root), image_size=48, cache_dir=tmp_path / "cache", val_split=0.4)
    assert len(folders()) == 1  # re-used
    data.load_dataset(str(root), image_size=32, cache_dir=tmp_path / "cache", val_split=0.4)
    data.load_dataset(str(root), image_size=48, cache_dir=tmp_path / "cache", val_split=0.4, seed=1)
    assert len(folders()) == 3  # another size, another split: decoded apart


def test_decoding_reports_its_rate_and_time_left(tmp_path, capsys):
    data.load_dataset(str(write_tree_of(tmp_path / "tree", [(40, 40)])), cache_dir=tmp_path / "cache")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("decoding")]
    assert lines and "12/12 files, " in lines[-1] and "/s, " in lines[-1] and lines[-1].endswith(" s")


def test_an_interrupted_decode_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    root = write_tree_of(tmp_path / "tree", [(40, 40)], per_class=4)
    calls = []

    def interrupted(source, image_size, max_pixels=None):
        calls.append(source)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return np.zeros((*image_size, 3), np.uint8)

    monkeypatch.setattr("imagerec.data.images.decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("*.npy"))
    monkeypatch.undo()
    loaded = data.load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert loaded.x_train.shape[0] == 8 and loaded.x_train.any()  # decoded again, for real


def test_a_scan_bomb_in_training_data_is_skipped_with_its_reason(tmp_path):
    root = tmp_path / "tree"
    for name, color in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        for index in range(3):
            save_image(root / "train" / name / f"{index}.png", solid_rgb(color))
    (root / "train" / "a" / "bomb.jpg").write_bytes(hostile_files.scan_bomb(side=1000, repeats=300))
    dataset = data.load_dataset(str(root), cache_dir=tmp_path / "cache", progress=False)
    assert dataset.skipped_count == 1 and "scans" in dataset.skipped[0]["reason"]


def test_a_full_disk_while_decoding_is_one_line_and_leaves_nothing(small_disk, tmp_path):

    folder = write_synthetic_folder(tmp_path / "images", train_per_class=40, test_per_class=5)
    cache = small_disk / "cache"
    # 180 images at 48x48 are 1.2 MB decoded: the memory map's pages cannot all be backed on this 1 MiB disk
    result = run_cli("train", "--recipe", "airbench_small", "--data", folder, "--cache-dir", cache, "--image-size", 48,
                     "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") <= 2 and "no space left" in result.stderr  # the size line, a progress line
    assert [path.name for path in (cache / "decoded").iterdir()] == []


def test_a_reservation_that_fails_for_space_is_a_user_error_with_nothing_left(image_folder, tmp_path, monkeypatch):
    import errno
    import os

    def no_space(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(UserError, match="no space left for the decoded images"):
        data.load_dataset(str(image_folder), cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "decoded").iterdir()) == []
