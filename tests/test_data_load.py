"""`load_dataset`: every source to a Dataset, and bad sources as one-line errors."""

from pathlib import Path

import numpy as np
import pytest

from imagerec import data
from imagerec.errors import UserError

from helpers import save_image, solid_rgb


def test_folder_decodes_every_format_to_32x32_rgb(mixed_tree, tmp_path):
    dataset = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    assert dataset.class_names == ("blue", "red")  # from the folders, sorted
    assert dataset.x_train.shape == (8, 32, 32, 3) and dataset.x_train.dtype == np.uint8
    assert dataset.x_test.shape == (2, 32, 32, 3)
    assert np.bincount(dataset.y_train).tolist() == [4, 4]
    red_means = dataset.x_train[dataset.y_train == 1].mean(axis=(1, 2))
    assert (red_means[:, 0] > 200).all() and (red_means[:, 2] < 40).all()
    grayscale = dataset.x_train[dataset.y_train == 0][1]
    assert np.all(np.abs(grayscale.astype(int) - 80) <= 1)


def test_corrupt_and_non_image_files_are_skipped_counted_and_listed(mixed_tree, tmp_path, capsys):
    dataset = data.load_dataset(str(mixed_tree), cache_dir=tmp_path / "cache")
    assert dataset.skipped_count == 2
    skipped = sorted(Path(item["path"]).name for item in dataset.skipped)
    assert skipped == ["notes.txt", "truncated.jpg"]
    assert "skipped 2 unreadable file(s)" in capsys.readouterr().err
    assert dataset.summary()["skipped_count"] == 2


@pytest.mark.parametrize("problem, match", [
    ("missing", "does not exist"),
    ("no_train", "no train/ folder"),
    ("empty_class", "no readable images in train/: empty"),
    ("no_images", "no readable images"),
    ("not_archive", "folder or a .tar.gz"),
    ("bad_archive", "cannot"),
])
def test_bad_data_sources_are_clear_errors(tmp_path, problem, match):
    root = tmp_path / "tree"
    if problem == "no_train":
        (root / "images").mkdir(parents=True)
    elif problem == "empty_class":
        for name in "abcde":
            save_image(root / "train" / "full" / f"{name}.png", solid_rgb((1, 2, 3)))
            (root / "train" / "empty").mkdir(parents=True, exist_ok=True)
            (root / "train" / "empty" / f"{name}.jpg").write_bytes(b"nope")
    elif problem == "no_images":
        (root / "train" / "cls").mkdir(parents=True)
        for name in ("readme.txt", "notes.md", "data.csv"):
            (root / "train" / "cls" / name).write_text("hello")
    elif problem == "not_archive":
        root = tmp_path / "data.csv"
        root.write_text("a,b")
    elif problem == "bad_archive":
        root = tmp_path / "data.tar.gz"
        root.write_bytes(b"this is not gzip")
    with pytest.raises(UserError, match=match):
        data.load_dataset(str(root), cache_dir=tmp_path / "cache")


def test_bad_val_split_is_refused(mixed_tree):
    with pytest.raises(UserError, match="between 0 and 1"):
        data.load_dataset(str(mixed_tree), val_split=1.5)


@pytest.mark.integration
def test_real_cifar_subset_loads(cifar_subset, tmp_path):
    dataset = data.load_dataset(str(cifar_subset), cache_dir=tmp_path / "cache")
    assert dataset.num_classes == 10 and "airplane" in dataset.class_names
    assert len(dataset.y_train) == 300 and len(dataset.y_test) == 100
    assert dataset.skipped_count == 0


def test_a_file_name_with_a_newline_stays_on_the_warning_line(tmp_path, capsys):
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            save_image(tmp_path / "tree" / split / name / "a.png", solid_rgb((1, 2, 3)))
    (tmp_path / "tree" / "train" / "cat" / "bad\nimagerec: forged.jpg").write_bytes(b"nope")
    data.load_dataset(str(tmp_path / "tree"), cache_dir=tmp_path / "cache", progress=False)
    warning = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(warning) == 1 and "bad\\nimagerec: forged.jpg" in warning[0]


def test_a_relative_source_is_recorded_absolute_so_a_run_finds_its_data_from_anywhere(image_folder, monkeypatch):
    monkeypatch.chdir(image_folder)
    dataset = data.load_dataset(f"../{image_folder.name}", progress=False)
    assert dataset.source == str(image_folder) and dataset.summary()["source"] == str(image_folder)


def test_a_one_class_data_set_is_refused_in_one_line(tmp_path):
    for index in range(4):
        save_image(tmp_path / "tree" / "train" / "only" / f"{index}.png", solid_rgb((index, 0, 0)))
        save_image(tmp_path / "tree" / "test" / "only" / f"{index}.png", solid_rgb((index, 0, 0)))
    with pytest.raises(UserError, match="has 1 class \\(only\\); a classifier needs 2 or more"):
        data.load_dataset(str(tmp_path / "tree"), cache_dir=tmp_path / "cache", progress=False)
