"""Image issues of the files themselves: unreadable, blank, low information, dark, light, blurry, grayscale in
a colour set, odd size, odd aspect ratio, with cleanvision's definitions and thresholds (cleanvision 0.3.7,
`image_property.py`).

Written here rather than calling cleanvision because of time: cleanvision took 34 s for 3,000 CIFAR-10 files
on this 2-core machine (11 ms per file: pandas rows, process pools and hashes the doctor computes anyway), so
12 minutes for CIFAR-10's 60,000. These are the same statistics: `image_statistics` with Pillow per image (the
reference), `batch_statistics` the same numbers in NumPy for a stack of images of one size (what the doctor
runs: Pillow's grey conversion and FIND_EDGES kernel written out; tests hold the two equal). Files are read at
their own size, up to QUALITY_SIDE on the longer side (brightness and entropy do not depend on scale;
cleanvision itself measures blur at 64 px).
"""

import concurrent.futures
import math
import os

import numpy as np
from PIL import Image, ImageFilter

from imagerec.data import images
from imagerec.diagnosis.findings import Finding

QUALITY_SIDE = 256
BLUR_SIDE = 64  # cleanvision's MAX_RESOLUTION_FOR_BLURRY_DETECTION
DARK, LIGHT, ENTROPY_BITS, BLUR, ASPECT, IQR_FACTOR = 0.32, 0.05, 3.0, 0.29, 0.35, 3.0  # cleanvision's defaults
BLANK_SPREAD = 1.0  # largest channel's standard deviation (0-255) under which an image is one flat colour
GRAY_CHROMA = 4  # largest channel difference of a grey image saved as RGB (JPEG's rounding)
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def image_statistics(rgb: np.ndarray, size, mode: str) -> dict:
    """The numbers each issue is judged by, for one image (uint8 H x W x 3) of own `size` (width, height)."""
    pixels = rgb.astype(np.float32)
    brightness = np.sqrt(0.241 * pixels[..., 0] ** 2 + 0.691 * pixels[..., 1] ** 2
                         + 0.068 * pixels[..., 2] ** 2) / 255
    picture = Image.fromarray(rgb)
    width, height = size
    return {"dark": float(np.percentile(brightness, 99)), "light": float(1 - np.percentile(brightness, 5)),
            "entropy": float(picture.entropy()), "blur": _blur_score(picture),
            "spread": float(pixels.reshape(-1, 3).std(0).max()),
            "grayscale": mode in GRAY_MODES or _no_colour(rgb),
            "side": math.sqrt(width * height), "aspect": min(width / height, height / width)}


def _blur_score(picture: Image.Image) -> float:
    """cleanvision's blurriness score: edge spread at most 64 px, plus a share for grey-level spread."""
    ratio = max(picture.size) / BLUR_SIDE
    if ratio > 1:
        picture = picture.resize((max(int(picture.width // ratio), 1), max(int(picture.height // ratio), 1)))
    gray = picture.convert("L")
    edges = np.asarray(gray.filter(ImageFilter.FIND_EDGES), np.float64)
    blur = 1 - math.exp(-edges.std() * 0.01)
    spread = 1 - math.exp(-float(np.std(gray.histogram())) * 0.01)
    return min(blur + (spread if spread > 0.18 else 0.0), 1.0)


def _no_colour(rgb: np.ndarray) -> bool:
    channels = rgb.astype(np.int16)
    return bool(np.abs(channels[..., 0] - channels[..., 1]).max() <= GRAY_CHROMA
                and np.abs(channels[..., 1] - channels[..., 2]).max() <= GRAY_CHROMA)


def batch_statistics(stack: np.ndarray) -> dict:
    """`image_statistics`' pixel numbers for N images of one size (uint8 N x H x W x 3, at most BLUR_SIDE),
    as arrays of N."""
    pixels = stack.astype(np.float32)
    count = len(stack)
    brightness = np.sqrt(0.241 * pixels[..., 0] ** 2 + 0.691 * pixels[..., 1] ** 2
                         + 0.068 * pixels[..., 2] ** 2).reshape(count, -1) / 255
    dark, light = np.percentile(brightness, [99, 5], axis=1)
    bins = (np.arange(count)[:, None, None, None] * 768 + np.arange(3) * 256 + stack).ravel()
    entropy = _entropy(np.bincount(bins, minlength=count * 768).reshape(count, 768))
    # Pillow's L: (299 R + 587 G + 114 B) / 1000 in 16-bit fixed point, rounded.
    wide = stack.astype(np.int64)
    gray = (wide[..., 0] * 19595 + wide[..., 1] * 38470 + wide[..., 2] * 7471 + 0x8000) >> 16
    histogram = np.stack([np.bincount(row, minlength=256) for row in gray.reshape(count, -1)]).astype(np.float64)
    blur = 1 - np.exp(-_find_edges(gray).reshape(count, -1).std(1) * 0.01)
    spread = 1 - np.exp(-histogram.std(1) * 0.01)
    channels = stack.astype(np.int16)
    no_colour = ((np.abs(channels[..., 0] - channels[..., 1]).reshape(count, -1).max(1) <= GRAY_CHROMA)
                 & (np.abs(channels[..., 1] - channels[..., 2]).reshape(count, -1).max(1) <= GRAY_CHROMA))
    return {"dark": dark, "light": 1 - light, "entropy": entropy, "spread": pixels.reshape(count, -1, 3).std(1).max(1),
            "blur": np.minimum(blur + np.where(spread > 0.18, spread, 0.0), 1.0), "grayscale": no_colour}


def _entropy(histograms: np.ndarray) -> np.ndarray:
    """Pillow's Image.entropy(): -sum p log2 p over the bands' concatenated histograms, per row."""
    probabilities = histograms / np.maximum(histograms.sum(1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(probabilities > 0, probabilities * np.log2(probabilities), 0.0), axis=1)


def _find_edges(gray: np.ndarray) -> np.ndarray:
    """Pillow's ImageFilter.FIND_EDGES on N grey images: 8 x centre - the 8 neighbours, clipped to 0-255, the
    one-pixel border copied from the image."""
    out = gray.copy()
    if gray.shape[1] < 3 or gray.shape[2] < 3:
        return out
    centre = gray[:, 1:-1, 1:-1] * 9
    neighbours = sum(gray[:, 1 + dy:gray.shape[1] - 1 + dy, 1 + dx:gray.shape[2] - 1 + dx]
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    out[:, 1:-1, 1:-1] = np.clip(centre - neighbours, 0, 255)
    return out


def file_statistics(files, workers: int | None = None) -> list:
    """image_statistics of each file (read up to QUALITY_SIDE), or the reason it cannot be read (a str)."""
    def one(file):
        try:
            return images.decode_at_most(file, QUALITY_SIDE)
        except images.ImageDecodeError as error:
            return str(error)
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        decoded = list(pool.map(one, files, chunksize=64))
    return _statistics_of(decoded)


def array_statistics(pixels) -> list:
    """image_statistics of decoded images (a source without files: CIFAR-10's arrays)."""
    return _statistics_of([(np.asarray(image), (image.shape[1], image.shape[0]), "RGB") for image in pixels])


def _statistics_of(decoded: list) -> list:
    """Per item (pixels, own size, mode) or a reason (str): its statistics, or the reason. Images of one shape
    up to BLUR_SIDE are measured together (`batch_statistics`), larger ones one by one."""
    out = list(decoded)
    shapes = {}
    for index, item in enumerate(decoded):
        if isinstance(item, str):
            continue
        if max(item[0].shape[:2]) > BLUR_SIDE:
            out[index] = image_statistics(*item)
        else:
            shapes.setdefault(item[0].shape, []).append(index)
    for rows in shapes.values():
        for start in range(0, len(rows), 4096):  # 4,096 CIFAR-sized images: ~50 MB of temporaries
            chunk = rows[start:start + 4096]
            numbers = batch_statistics(np.stack([decoded[index][0] for index in chunk]))
            for position, index in enumerate(chunk):
                _, (width, height), mode = decoded[index]
                out[index] = {key: (bool if key == "grayscale" else float)(values[position])
                              for key, values in numbers.items()}
                out[index].update(side=math.sqrt(width * height), aspect=min(width / height, height / width),
                                  grayscale=out[index]["grayscale"] or mode in GRAY_MODES)
    return out


def quality_findings(statistics: list, names: list, splits: list) -> list:
    """Findings for every image issue among `statistics` (one per file, in the order of `names`/`splits`)."""
    readable = [item for item in statistics if not isinstance(item, str)]
    colour_set = sum(item["grayscale"] for item in readable) < len(readable) / 2
    low, high = _size_bounds([item["side"] for item in readable])
    findings = []
    for item, name, split in zip(statistics, names, splits):
        if isinstance(item, str):
            findings.append(Finding(name, split, "unreadable", 1.0, detail=item))
            continue
        for kind, score, detail in _issues(item, colour_set, low, high):
            findings.append(Finding(name, split, kind, score, detail=detail))
    return findings


def _size_bounds(sides) -> tuple:
    if not sides:
        return 0.0, float("inf")
    q1, q3 = np.percentile(sides, [25, 75])
    return q1 - IQR_FACTOR * (q3 - q1), q3 + IQR_FACTOR * (q3 - q1)


def _issues(item: dict, colour_set: bool, low: float, high: float):
    """(kind, score, detail) of each issue one image has; a blank image is only blank, and a low-information or
    dark one not also blurry (its edges are faint for that reason)."""
    blank = item["spread"] < BLANK_SPREAD
    if blank:
        yield "blank", 1 - item["spread"] / BLANK_SPREAD, f"pixel spread {item['spread']:.2f}"
    elif item["entropy"] < ENTROPY_BITS:
        yield "low_information", 1 - item["entropy"] / ENTROPY_BITS, f"entropy {item['entropy']:.2f} bits"
    elif item["blur"] < BLUR and item["dark"] >= DARK:
        yield "blurry", 1 - item["blur"] / BLUR, f"edge score {item['blur']:.3f}"
    if not blank and item["dark"] < DARK:
        yield "dark", 1 - item["dark"] / DARK, f"99th percentile brightness {item['dark']:.3f}"
    if not blank and item["light"] < LIGHT:
        yield "light", 1 - item["light"] / LIGHT, f"5th percentile brightness {1 - item['light']:.3f}"
    if colour_set and item["grayscale"] and not blank:
        yield "grayscale", 1.0, "no colour"
    if not low <= item["side"] <= high:
        distance = (low - item["side"]) if item["side"] < low else (item["side"] - high)
        yield "odd_size", float(distance / max(high - low, 1.0)), f"{item['side']:.0f} px sqrt(area)"
    if item["aspect"] < ASPECT:
        yield "odd_aspect_ratio", 1 - item["aspect"] / ASPECT, f"side ratio {item['aspect']:.2f}"
