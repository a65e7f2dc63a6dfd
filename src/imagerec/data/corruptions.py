"""Corrupted copies of images: CIFAR-10-C's corruptions with CIFAR-10-C's parameters, and what users meet.

CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019) is 15 corruptions at 5 severities; its constants are those of
`hendrycks/robustness`, `ImageNet-C/create_c/make_cifar_c.py` (the `imagecorruptions` package uses ImageNet-C's
stronger ones, so its figures do not compare). That script needs scikit-image, OpenCV and ImageMagick; this
module computes the same operations with NumPy, SciPy and Pillow, batched over images (the script corrupts one
image at a time), which is why it is written here rather than imported. Differences from the script:

- frost is left out: it blends crops of six frost photographs that are not redistributed with the data;
- motion blur (also inside snow) is ImageMagick's MotionBlurImage rebuilt: a one-sided line of 2*radius + 1
  Gaussian-weighted taps at the angle, edge pixels repeated;
- every pixel distance (blur radii, shuffle distance, zoom crops, displacements) is CIFAR's at 32 px scaled by the
  image's shorter side / 32, so a 224 px image meets the same corruption relative to its size;
- random numbers come from NumPy's PCG64 seeded per (seed, corruption, severity, chunk of images): the same call
  gives the same images, and adding a corruption to a run never changes another's images.

The other corruptions are what deployed models meet that CIFAR-10-C has not: GIFs (Pillow's default web palette with
Floyd-Steinberg dithering; adaptive palettes), heavy JPEG, thumbnails scaled back up, grayscale.
"""

import dataclasses
import zlib

import numpy as np

from imagerec.data.cifar_c import (brightness, contrast, defocus_blur, elastic_transform, fog, gaussian_noise,
                                   glass_blur, impulse_noise, jpeg_compression, motion_blur, pixelate, shot_noise,
                                   snow, zoom_blur)
from imagerec.data.cifar_c import gray, jpeg, per_image, to_uint8  # shared with the user corruptions
from imagerec.errors import UserError

SEVERITIES = (1, 2, 3, 4, 5)
CHUNK = 256  # images corrupted at once: bounds memory at any image size, and fixes each chunk's random stream
LEFT_OUT = {"frost": "CIFAR-10-C blends crops of frost photographs that are not redistributed; left out"}


@dataclasses.dataclass(frozen=True)
class Corruption:
    name: str
    apply: object  # (float32 images in [0, 1] (N, H, W, 3), severity, rng, scale) -> float images in [0, 1]
    family: str  # noise, blur, weather, digital (CIFAR-10-C's groups) or user
    cifar_c: bool  # one of CIFAR-10-C's 15: counted in the mean corruption accuracy
    levels: int = 5  # 1 for a corruption with no strength to vary (grayscale, the web palette)


# ---------------------------------------------------------------- what users meet


def gif_web(x, severity, rng, scale):
    """What `image.save("x.gif")` does to a photo: Pillow's convert("P") — the 216-colour web palette with
    Floyd-Steinberg dithering."""
    return per_image(x, lambda image: image.convert("P"))


def gif_adaptive(x, severity, rng, scale):
    """A GIF with a palette made for the image (median cut), 256 down to 16 colours, Floyd-Steinberg dithered."""
    from PIL import Image

    colours = [256, 128, 64, 32, 16][severity - 1]
    return per_image(x, lambda image: image.quantize(colours, method=Image.Quantize.MEDIANCUT,
                                                      dither=Image.Dither.FLOYDSTEINBERG))


def jpeg_low(x, severity, rng, scale):
    """JPEG at the qualities of an over-compressed upload: 30 down to 10."""
    return per_image(x, jpeg([30, 25, 20, 15, 10][severity - 1]))


def downscale(x, severity, rng, scale):
    """A thumbnail scaled back up: down to 3/4 ... 1/4 of the side and back, bilinear both ways."""
    from PIL import Image

    share = [0.75, 0.5, 0.375, 0.3125, 0.25][severity - 1]

    def thumbnail(image):
        small = image.resize((max(1, round(image.width * share)), max(1, round(image.height * share))),
                             Image.BILINEAR)
        return small.resize(image.size, Image.BILINEAR)
    return per_image(x, thumbnail)


def grayscale(x, severity, rng, scale):
    return np.repeat(gray(x), 3, axis=-1)


CORRUPTIONS = {corruption.name: corruption for corruption in (
    Corruption("gaussian_noise", gaussian_noise, "noise", True),
    Corruption("shot_noise", shot_noise, "noise", True),
    Corruption("impulse_noise", impulse_noise, "noise", True),
    Corruption("defocus_blur", defocus_blur, "blur", True),
    Corruption("glass_blur", glass_blur, "blur", True),
    Corruption("motion_blur", motion_blur, "blur", True),
    Corruption("zoom_blur", zoom_blur, "blur", True),
    Corruption("snow", snow, "weather", True),
    Corruption("fog", fog, "weather", True),
    Corruption("brightness", brightness, "weather", True),
    Corruption("contrast", contrast, "digital", True),
    Corruption("elastic_transform", elastic_transform, "digital", True),
    Corruption("pixelate", pixelate, "digital", True),
    Corruption("jpeg_compression", jpeg_compression, "digital", True),
    Corruption("gif_web", gif_web, "user", False, levels=1),
    Corruption("gif_adaptive", gif_adaptive, "user", False),
    Corruption("jpeg_low", jpeg_low, "user", False),
    Corruption("downscale", downscale, "user", False),
    Corruption("grayscale", grayscale, "user", False, levels=1),
)}
CIFAR_C = tuple(name for name, corruption in CORRUPTIONS.items() if corruption.cifar_c)


def parse_names(text: str) -> tuple:
    """'all', 'cifar10c', 'user' or a comma-separated list of names → the corruptions' names, in table order."""
    groups = {"all": tuple(CORRUPTIONS), "cifar10c": CIFAR_C,
              "user": tuple(name for name in CORRUPTIONS if name not in CIFAR_C)}
    names = []
    for part in (item.strip() for item in str(text).split(",")):
        if part in groups:
            names.extend(groups[part])
        elif part in CORRUPTIONS:
            names.append(part)
        elif part in LEFT_OUT:
            raise UserError(f"corruption {part!r}: {LEFT_OUT[part]}")
        else:
            raise UserError(f"unknown corruption {part!r} in `corruptions`: choose all, cifar10c, user or names "
                            f"from {', '.join(CORRUPTIONS)}")
    return tuple(dict.fromkeys(names))


def parse_severities(text) -> tuple:
    """'1-5', '3' or '1,3,5' → sorted severities within 1-5."""
    text = str(text).strip()
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-", 1))
            chosen = range(low, high + 1)
        else:
            chosen = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"`severities` must be like 1-5, 3 or 1,3,5, got {text!r}") from None
    chosen = sorted(set(chosen))
    if not chosen or chosen[0] < 1 or chosen[-1] > 5:
        raise UserError(f"`severities` must lie within 1-5, got {text!r}")
    return tuple(chosen)


def levels_of(name: str, severities) -> tuple:
    """The severities that apply to a corruption: all asked, or (1,) for one with a single level."""
    return tuple(severities) if CORRUPTIONS[name].levels > 1 else (1,)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """A corrupted copy of uint8 images (N, H, W, 3) — the input is not modified — as uint8 of the same shape.
    Deterministic for (seed, name, severity); the same image gives the same output in any call of equal length."""
    if name not in CORRUPTIONS:
        raise UserError(f"unknown corruption {name!r}")
    corruption = CORRUPTIONS[name]
    if not 1 <= severity <= corruption.levels:
        raise UserError(f"{name} has severities 1-{corruption.levels}, got {severity}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(f"corruptions take uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    scale = min(images.shape[1:3]) / 32
    out = np.empty_like(images)
    for start in range(0, len(images), CHUNK):
        rng = np.random.default_rng([seed, zlib.crc32(name.encode()), severity, start // CHUNK])
        chunk = images[start:start + CHUNK].astype(np.float32) / 255
        corrupted = corruption.apply(chunk, severity, rng, scale)
        out[start:start + CHUNK] = to_uint8(corrupted)
    return out
