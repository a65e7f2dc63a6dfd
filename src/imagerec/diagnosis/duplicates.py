"""Duplicates and leaks: exact copies (the same decoded pixels), near copies by perceptual hash (imagehash's
pHash: the low frequencies of the grey image's DCT, 64 bits) and by the fold model's embeddings (cosine of the
features its last layer reads), within a split and from the test split into the training split (a leak).

Each image is compared with its nearest neighbour only (one matrix product or XOR per block of rows), so the
search is O(N^2) arithmetic but O(N) memory and a few seconds for CIFAR-10's 60,000 images.
"""

import hashlib

import numpy as np

from imagerec.diagnosis.findings import Finding

# Closeness thresholds, chosen on near copies of CIFAR-10 training images made by benchmarks/near_duplicates.py
# (re-encoded, resized, shifted, recoloured) against distinct training images (BENCHMARKS.md, issue 22). pHash
# within 4 bits finds 99.6-100% of the re-encoded, resized and recoloured copies but 0.6% of the shifted ones,
# with 1.1% of distinct images matched (about CIFAR-10's own rate of near copies); the embeddings find shifted
# copies only: the pair below, the most shifted copies (14%) for at most twice that rate of matches (2.1%).
MAX_HASH_DISTANCE = 4  # pHash bits that differ (of 64)
MIN_COSINE = 0.95  # embedding cosine similarity
# A model's embeddings gather a class's images together (on an easy task all of them at cosine ~1), so an
# embedding neighbour counts as a copy only when its pHash also agrees loosely (random pairs differ in ~32 bits).
LOOSE_HASH_DISTANCE = 10
EMBEDDING_CANDIDATES = 8  # nearest keys by cosine among which the nearest by pHash is taken
BLOCK = 1024  # embedding rows compared at once (4 MB per 1,000 keys)
HASH_BLOCK = 256  # hash rows compared at once (two bytes per pair: an XOR and its bit count)


def pixel_digests(images) -> np.ndarray:
    """A 128-bit digest of each image's pixels (equal digests: the same decoded pixels)."""
    return np.asarray([hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()
                       for image in images], object)


def perceptual_hashes(images) -> np.ndarray:
    """imagehash's pHash of each uint8 image, as uint64."""
    import imagehash
    from PIL import Image

    return np.asarray([int(str(imagehash.phash(Image.fromarray(np.asarray(image)))), 16) for image in images],
                      np.uint64)


def nearest_by_hash(queries: np.ndarray, keys: np.ndarray, same: bool) -> tuple:
    """(index into `keys`, Hamming distance) of each query hash's nearest key (not itself when `same`)."""
    index = np.zeros(len(queries), np.int64)
    distance = np.full(len(queries), 65, np.int64)
    if len(keys) == 0 or len(queries) == 0:
        return index, distance
    for start in range(0, len(queries), HASH_BLOCK):
        block = np.bitwise_count(queries[start:start + HASH_BLOCK, None] ^ keys[None, :])  # uint8 counts
        if same:
            block[np.arange(len(block)), np.arange(start, start + len(block))] = 65
        index[start:start + len(block)] = block.argmin(1)
        distance[start:start + len(block)] = block.min(1)
    return index, distance


def nearest_by_embedding(queries: np.ndarray, keys: np.ndarray, same: bool, count: int = 1) -> tuple:
    """(indices into `keys`, cosine similarities), each (N, count), of each query's `count` nearest keys, nearest
    first (not itself when `same`)."""
    count = max(1, min(count, len(keys) - (1 if same else 0)))
    index = np.zeros((len(queries), count), np.int64)
    cosine = np.full((len(queries), count), -1.0)
    if len(keys) == 0 or len(queries) == 0:
        return index, cosine
    queries, keys = _unit(queries), _unit(keys)
    for start in range(0, len(queries), BLOCK):
        block = queries[start:start + BLOCK] @ keys.T
        if same:
            block[np.arange(len(block)), np.arange(start, start + len(block))] = -2
        top = np.argpartition(-block, count - 1, axis=1)[:, :count]
        values = np.take_along_axis(block, top, 1)
        order = np.argsort(-values, axis=1)
        index[start:start + len(block)] = np.take_along_axis(top, order, 1)
        cosine[start:start + len(block)] = np.take_along_axis(values, order, 1)
    return index, cosine


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def copies(query: dict, key: dict, same: bool) -> dict:
    """{query row: (key row, kind, score, detail)} for each query image whose nearest key image is a copy.

    `query`/`key` are {"digests", "hashes", "embeddings" (or None)} of two splits (the same one when `same`)."""
    found = {}
    exact = {}
    for row, digest in enumerate(key["digests"]):
        exact.setdefault(digest, []).append(row)
    for row, digest in enumerate(query["digests"]):
        match = [other for other in exact.get(digest, ()) if not (same and other == row)]
        if match:
            found[row] = (match[0], "exact", 1.0, "the same pixels")
    hashed, distance = nearest_by_hash(query["hashes"], key["hashes"], same)
    for row in np.flatnonzero(distance <= MAX_HASH_DISTANCE):
        found.setdefault(int(row), (int(hashed[row]), "near", 1 - distance[row] / 64,
                                    f"pHash distance {distance[row]} of 64 bits"))
    if query.get("embeddings") is not None and key.get("embeddings") is not None:
        found = {**_embedding_copies(query, key, same), **found}  # exact and pHash matches take precedence
    return found


def _embedding_copies(query: dict, key: dict, same: bool) -> dict:
    """Copies by embedding: of each query's EMBEDDING_CANDIDATES nearest keys by cosine (at least MIN_COSINE),
    the one nearest by pHash, when within LOOSE_HASH_DISTANCE (a class's images crowd together in a model's
    embedding space, so the nearest by cosine alone is often another image of the class)."""
    nearest, cosine = nearest_by_embedding(query["embeddings"], key["embeddings"], same, EMBEDDING_CANDIDATES)
    bits = np.bitwise_count(query["hashes"][:, None] ^ key["hashes"][nearest]).astype(np.int64)
    bits[cosine < MIN_COSINE] = 65
    pick = bits.argmin(1)
    rows = np.arange(len(nearest))
    found = {}
    for row in np.flatnonzero(bits[rows, pick] <= LOOSE_HASH_DISTANCE):
        chosen = pick[row]
        found[int(row)] = (int(nearest[row, chosen]), "near", float(cosine[row, chosen]),
                           f"embedding cosine {cosine[row, chosen]:.3f}, pHash distance {bits[row, chosen]}")
    return found


def duplicate_findings(splits: dict) -> list:
    """Findings for copies within each split and from "test" into "train" (leaks).

    `splits`: {split: {"names", "digests", "hashes", "embeddings"}}. Within a split each pair is reported
    once, the later file as the copy of the earlier; a test image with a copy in train is a "leak"."""
    findings = []
    for split, items in splits.items():
        for row, (other, how, score, detail) in copies(items, items, same=True).items():
            if other < row:  # the pair's other half names this one; report the later file only
                kind = "exact_duplicate" if how == "exact" else "near_duplicate"
                findings.append(Finding(items["names"][row], split, kind, score,
                                        duplicate_of=items["names"][other], detail=detail))
    if "test" in splits and "train" in splits:
        test, train = splits["test"], splits["train"]
        for row, (other, how, score, detail) in copies(test, train, same=False).items():
            findings.append(Finding(test["names"][row], "test", "leak", score, duplicate_of=train["names"][other],
                                    detail=f"{'exact' if how == 'exact' else 'near'} copy: {detail}"))
    return findings
