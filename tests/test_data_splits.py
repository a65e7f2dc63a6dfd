"""Stratified, seeded test and validation splits."""

import numpy as np

from imagerec import data

from helpers import save_image, solid_rgb, write_tree_of


def test_tree_without_test_split_is_split_stratified_and_seeded(tmp_path):
    root = tmp_path / "tree"
    for name, color in (("a", (255, 0, 0)), ("b", (0, 255, 0))):
        for index in range(10):
            save_image(root / "train" / name / f"{index}.png", solid_rgb((color[0], color[1], index * 20)))
    first = data.load_dataset(str(root), val_split=0.3, seed=1, cache_dir=tmp_path / "cache")
    assert np.bincount(first.y_test).tolist() == [3, 3]
    assert np.bincount(first.y_train).tolist() == [7, 7]
    assert first.test_split == "val-split 0.3"
    again = data.load_dataset(str(root), val_split=0.3, seed=1, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.x_test, again.x_test)


def test_a_validation_hold_out_is_stratified_decoded_apart_and_leaves_the_test_split_alone(tmp_path):
    root = write_tree_of(tmp_path / "tree", [(40, 40)], per_class=10)
    plain = data.load_dataset(str(root), cache_dir=tmp_path / "cache")
    held = data.load_dataset(str(root), cache_dir=tmp_path / "cache", val_split=0.2, hold_out_validation=True)
    assert plain.y_val is None and plain.summary()["validation_count"] == 0
    assert isinstance(held.x_val, np.memmap) and np.bincount(held.y_val).tolist() == [2, 2]
    assert np.bincount(held.y_train).tolist() == [8, 8] and held.summary()["validation_count"] == 4
    np.testing.assert_array_equal(held.x_test, plain.x_test)  # the test split is the source's, untouched
    pooled = np.concatenate([held.x_train, held.x_val]).reshape(20, -1)
    assert sorted(map(bytes, pooled)) == sorted(map(bytes, np.asarray(plain.x_train).reshape(20, -1)))
    in_memory = data.hold_out(plain, 0.2, seed=0)  # the same split, for a Dataset already in memory
    np.testing.assert_array_equal(in_memory.y_val, held.y_val)
