"""`train --exclude`: the list read and checked before anything is decoded, the training rows dropped, the
test split kept, and every bad list a one-line error."""

import dataclasses

import numpy as np
import pytest

from imagerec.data import exclude
from imagerec.data.dataset import Dataset
from imagerec.errors import UserError


def _dataset(train=6, test=3):
    names = ("cat", "dog")
    paths = {"train": tuple(f"train/{names[i % 2]}/{i}.png" for i in range(train)),
             "test": tuple(f"test/{names[i % 2]}/{i}.png" for i in range(test))}
    return Dataset(np.arange(train, dtype=np.uint8).reshape(train, 1, 1, 1).repeat(3, -1), np.arange(train) % 2,
                   np.zeros((test, 1, 1, 3), np.uint8), np.arange(test) % 2, names, source="here", paths=paths)


def test_a_doctor_csv_gives_each_path_its_first_kind(tmp_path):
    listed = tmp_path / "issues.csv"
    listed.write_text("path,split,kind,score,given,suggested,duplicate_of,detail\n"
                      "train/cat/0.png,train,label,0.9,cat,dog,,\ntrain/cat/0.png,train,dark,0.5,,,,\n"
                      'train/dog/1.png,train,near_duplicate,0.99,,,train/cat/0.png,"cosine, 0.99"\n')
    assert exclude.read_exclusions(listed).reasons == {"train/cat/0.png": "label", "train/dog/1.png": "near_duplicate"}


def test_a_text_file_lists_one_path_per_line_with_comments(tmp_path):
    listed = tmp_path / "leave-out.txt"
    listed.write_text("# blurry ones\ntrain/cat/0.png\n\n  train/dog/3.png  \n")
    assert exclude.read_exclusions(listed).reasons == {"train/cat/0.png": "listed", "train/dog/3.png": "listed"}


@pytest.mark.parametrize("content, message", [
    ("path,split,colour\ntrain/cat/0.png,train,red\n", r"column\(s\) colour"),
    ("", "lists no paths"), ("# nothing\n\n", "lists no paths")])
def test_a_list_of_another_kind_is_refused(tmp_path, content, message):
    listed = tmp_path / "list.csv"
    listed.write_text(content)
    with pytest.raises(UserError, match=message):
        exclude.read_exclusions(listed)


def test_a_missing_list_is_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        exclude.read_exclusions(tmp_path / "nope.csv")


def test_listed_training_rows_are_dropped_and_test_rows_kept(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("train/cat/0.png\ntrain/cat/4.png\ntest/dog/1.png\n")
    dataset = _dataset()
    kept, record = exclude.apply(dataset, exclude.read_exclusions(listed))
    assert kept.row_names("train") == ["train/dog/1.png", "train/cat/2.png", "train/dog/3.png", "train/dog/5.png"]
    assert kept.x_train[:, 0, 0, 0].tolist() == [1, 2, 3, 5]  # the pixels went with their names
    assert kept.y_train.tolist() == [1, 0, 1, 1]
    assert len(kept.y_test) == 3 and kept.row_names("test") == dataset.row_names("test")
    assert record["count"] == 2 and record["kept_in_test"] == 1 and record["by_split"] == {"train": 2}
    assert record["rows"] == [("train/cat/0.png", "train", "listed"), ("train/cat/4.png", "train", "listed")]
    assert dataset.x_train.shape[0] == 6  # the caller's dataset is untouched


def test_a_path_the_data_does_not_have_is_refused_before_anything_is_dropped(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("train/cat/0.png\ntrain/cat/missing.png\n")
    with pytest.raises(UserError, match="1 path.s. not in here.*missing.png"):
        exclude.apply(_dataset(), exclude.read_exclusions(listed))


def test_a_doctor_s_unreadable_files_need_no_leaving_out(tmp_path):
    listed = tmp_path / "issues.csv"
    listed.write_text("path,split,kind\ntrain/cat/broken.png,train,unreadable\ntrain/cat/0.png,train,label\n")
    kept, record = exclude.apply(_dataset(), exclude.read_exclusions(listed))
    assert record["count"] == 1 and len(kept.y_train) == 5


def test_leaving_out_every_image_of_a_class_is_refused(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"train/cat/{i}.png\n" for i in (0, 2, 4)))
    with pytest.raises(UserError, match="no training image of class.*cat"):
        exclude.apply(_dataset(), exclude.read_exclusions(listed))


def test_sources_without_files_are_named_by_index(tmp_path):
    dataset = dataclasses.replace(_dataset(), paths=None)
    listed = tmp_path / "list.txt"
    listed.write_text("train#1\n")
    kept, record = exclude.apply(dataset, exclude.read_exclusions(listed))
    assert kept.x_train[:, 0, 0, 0].tolist() == [0, 2, 3, 4, 5] and record["count"] == 1
