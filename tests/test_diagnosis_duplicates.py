"""Copies: exact ones by pixels, near ones by perceptual hash (and by embeddings only where the hash agrees),
within a split once per pair, and from test into train as leaks."""

import numpy as np
from PIL import Image

from imagerec.diagnosis import duplicates
from helpers import distinct_image


def _split(prefix, images, embeddings=None):
    return {"names": [f"{prefix}/{index}.png" for index in range(len(images))],
            "digests": duplicates.pixel_digests(images), "hashes": duplicates.perceptual_hashes(images),
            "embeddings": embeddings}


def test_planted_copies_are_found_and_distinct_images_are_not():
    rng = np.random.default_rng(0)
    train = np.stack([distinct_image(index % 3, rng) for index in range(60)])
    test = np.stack([distinct_image(index % 3, rng) for index in range(20)])
    train[50] = train[3]  # exact, within train
    train[51] = np.asarray(Image.fromarray(train[4]).resize((24, 24)).resize((32, 32)))  # resized down and up
    train[52] = np.roll(train[5], 1, axis=0)  # shifted by a pixel: pHash alone misses it
    test[0] = train[10]  # a leak, exact
    test[1] = np.clip(train[11] * 1.1 + 5, 0, 255).astype(np.uint8)  # a leak, recoloured
    expected = {("train/50.png", "exact_duplicate", "train/3.png"), ("train/51.png", "near_duplicate", "train/4.png"),
                ("test/0.png", "leak", "train/10.png"), ("test/1.png", "leak", "train/11.png")}
    splits = {"train": _split("train", train), "test": _split("test", test)}
    assert _found(splits) == expected
    # A model that places the shifted copy where its original is (and everything else apart) finds it too.
    embeddings = {split: np.random.default_rng(2).normal(size=(len(images), 16)) for split, images in
                  (("train", train), ("test", test))}
    embeddings["train"][52] = embeddings["train"][5]
    for split in splits:
        splits[split]["embeddings"] = embeddings[split]
    assert _found(splits) == expected | {("train/52.png", "near_duplicate", "train/5.png")}


def _found(splits):
    return {(finding.path, finding.kind, finding.duplicate_of) for finding in duplicates.duplicate_findings(splits)}


def test_embedding_neighbours_count_only_where_the_hash_agrees_loosely():
    rng = np.random.default_rng(1)
    images = np.stack([distinct_image(0, rng) for _ in range(10)])
    collapsed = np.ones((10, 4), np.float32)  # a model that maps a whole class to one point
    assert duplicates.duplicate_findings({"train": _split("train", images, collapsed)}) == []


def test_hash_search_finds_the_nearest_other_row():
    keys = np.asarray([0b0, 0b1111, 0b1110, 2**63], np.uint64)
    index, distance = duplicates.nearest_by_hash(keys, keys, same=True)
    assert index.tolist() == [3, 2, 1, 0] and distance.tolist() == [1, 1, 1, 1]
    index, cosine = duplicates.nearest_by_embedding(np.eye(3), np.asarray([[0, 1, 0], [1, 0.1, 0]]), same=False)
    assert index[:, 0].tolist() == [1, 0, 0] and np.isclose(cosine[0, 0], 1 / np.sqrt(1.01))
    points = np.asarray([[1, 0], [0, 1], [1, 0.5]])
    index, cosine = duplicates.nearest_by_embedding(points, points, same=True, count=2)
    assert index.tolist() == [[2, 1], [2, 0], [0, 1]] and np.isclose(cosine[2, 0], 1 / np.sqrt(1.25))
