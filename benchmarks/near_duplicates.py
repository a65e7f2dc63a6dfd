"""Which finds more near copies: perceptual hashes or a model's embeddings? Near copies of CIFAR-10 training
images are generated (re-encoded as JPEG, resized down and up, shifted by 1-2 px, recoloured), each searched
for among the training images by the doctor's own functions; distinct training images are searched the same way
(a hit there is a false alarm, or one of CIFAR-10's own near copies).

    python benchmarks/near_duplicates.py --data ../shared/data/cifar10-jpeg.tar.gz --copies 2000 [--json out.json]

Thresholds are chosen from this (training images only; never the test split).
"""

import argparse
import io
import json
import time

import numpy as np
from PIL import Image

TRANSFORMS = ("jpeg", "resize", "shift", "recolour")


def near_copy(image: np.ndarray, transform: str, rng) -> np.ndarray:
    picture = Image.fromarray(image)
    if transform == "jpeg":
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=int(rng.integers(40, 91)))
        return np.asarray(Image.open(buffer).convert("RGB"))
    if transform == "resize":
        side = int(rng.choice([20, 24, 28]))
        return np.asarray(picture.resize((side, side), Image.Resampling.BILINEAR).resize(
            picture.size, Image.Resampling.BILINEAR))
    if transform == "shift":
        dy, dx = (int(value) * int(rng.choice([-1, 1])) for value in rng.integers(1, 3, 2))
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="edge")
        return padded[2 + dy:2 + dy + image.shape[0], 2 + dx:2 + dx + image.shape[1]]
    gains = rng.uniform(0.8, 1.2) * rng.uniform(0.9, 1.1, 3)
    return np.clip(image * gains + rng.uniform(-10, 10), 0, 255).astype(np.uint8)


def rates(found_source, hit, transforms, negative_hit) -> dict:
    """Recall per transform and overall (the right source found), and the false-alarm rate on distinct images."""
    right = found_source & hit
    return {**{name: round(float(right[transforms == name].mean()), 3) for name in TRANSFORMS},
            "recall": round(float(right.mean()), 3), "false_alarms": round(float(negative_hit.mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    parser.add_argument("--copies", type=int, default=2000)
    parser.add_argument("--recipe", default="airbench_small")
    parser.add_argument("--json")
    arguments = parser.parse_args()
    from imagerec.data import load
    from imagerec.diagnosis import crossval, duplicates
    from imagerec.training import run

    dataset = load.load_dataset(arguments.data)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(dataset.y_train))
    sources, negatives = rows[:arguments.copies], rows[arguments.copies:2 * arguments.copies]
    keys = np.setdiff1d(np.arange(len(dataset.y_train)), negatives)  # the sources are among the keys
    transforms = np.asarray([TRANSFORMS[index % 4] for index in range(len(sources))])
    copies = np.stack([near_copy(np.asarray(dataset.x_train[row]), name, rng) for row, name in zip(sources, transforms)])
    started = time.perf_counter()
    key_hashes = duplicates.perceptual_hashes(dataset.x_train[keys])
    copy_hashes = duplicates.perceptual_hashes(copies)
    negative_hashes = duplicates.perceptual_hashes(dataset.x_train[negatives])
    hash_s = time.perf_counter() - started
    copy_nearest, copy_distance = duplicates.nearest_by_hash(copy_hashes, key_hashes, same=False)
    negative_nearest, negative_distance = duplicates.nearest_by_hash(negative_hashes, key_hashes, same=False)
    right_hash = keys[copy_nearest] == sources
    results = {"hash_s_per_1000": round(1000 * hash_s / (len(keys) + 2 * len(sources)), 3), "phash": {}}
    for threshold in (0, 2, 4, 6, 8, 10, 12):
        results["phash"][threshold] = rates(right_hash, copy_distance <= threshold, transforms,
                                            negative_distance <= threshold)
    started = time.perf_counter()
    net = run.fit(dataset, arguments.recipe, seed=0)
    embedder = crossval.embedding_model(net)
    embed = lambda images: crossval._NetPredictor(None, embedder).embed(np.asarray(images))  # noqa: E731
    key_embeddings, copy_embeddings, negative_embeddings = (embed(dataset.x_train[keys]), embed(copies),
                                                            embed(dataset.x_train[negatives]))
    results["model_s"] = round(time.perf_counter() - started, 1)
    copy_index, copy_cosine = duplicates.nearest_by_embedding(copy_embeddings, key_embeddings, same=False)
    negative_index, negative_cosine = duplicates.nearest_by_embedding(negative_embeddings, key_embeddings, same=False)
    right_embedding = keys[copy_index] == sources
    copy_bits = np.bitwise_count(copy_hashes ^ key_hashes[copy_index])  # pHash distance to the embedding's pick
    negative_bits = np.bitwise_count(negative_hashes ^ key_hashes[negative_index])
    loose_copy, loose_negative = (copy_bits <= duplicates.LOOSE_HASH_DISTANCE,
                                  negative_bits <= duplicates.LOOSE_HASH_DISTANCE)
    results["embedding"], results["embedding_and_phash"], results["either"] = {}, {}, {}
    for threshold in (0.9, 0.95, 0.97, 0.98, 0.99, 0.995):
        results["embedding"][threshold] = rates(right_embedding, copy_cosine >= threshold, transforms,
                                                negative_cosine >= threshold)
        for bits in (8, 10, 12, 14, 16):
            both_copy = (copy_cosine >= threshold) & (copy_bits <= bits)
            both_negative = (negative_cosine >= threshold) & (negative_bits <= bits)
            results["embedding_and_phash"][f"cosine >= {threshold}, pHash <= {bits}"] = rates(
                right_embedding, both_copy, transforms, both_negative)
    hash_hit = (copy_distance <= duplicates.MAX_HASH_DISTANCE) & right_hash
    embedding_hit = (copy_cosine >= duplicates.MIN_COSINE) & loose_copy & right_embedding
    results["either"]["doctor's thresholds"] = rates(hash_hit | embedding_hit, np.ones(len(sources), bool), transforms,
                                                     (negative_distance <= duplicates.MAX_HASH_DISTANCE)
                                                     | ((negative_cosine >= duplicates.MIN_COSINE) & loose_negative))
    text = json.dumps(results, indent=2)
    print(text)
    if arguments.json:
        with open(arguments.json, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
