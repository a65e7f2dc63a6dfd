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

`USER_CORRUPTIONS` are what deployed models meet that CIFAR-10-C has not: GIFs (Pillow's default web palette with
Floyd-Steinberg dithering; adaptive palettes), heavy JPEG, thumbnails scaled back up, grayscale.
"""

import dataclasses
import io
import zlib

import numpy as np
from scipy import ndimage

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


# ---------------------------------------------------------------- helpers


def _scaled(pixels: float, scale: float) -> float:
    return pixels * scale


def _gaussian(images: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """scikit-image's `filters.gaussian` (mode 'nearest', truncate 4) over the spatial axes of (N, H, W[, C])."""
    sigmas = (0, sigma, sigma) + (0,) * (images.ndim - 3)
    return ndimage.gaussian_filter(images, sigmas, mode=mode, truncate=truncate)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint8 truncated as CIFAR-10-C's np.uint8(), less float fuzz (k / 255 * 255 may be k - 1e-6)."""
    return np.uint8(np.clip(images, 0, 1) * 255 + 1e-3)


def _per_image(images: np.ndarray, transform) -> np.ndarray:
    """A Pillow round trip image by image: `transform(PIL.Image) -> PIL.Image`, back as float in [0, 1]."""
    from PIL import Image

    out = np.empty_like(images)
    for index, image in enumerate(images):
        pil = Image.fromarray(_to_uint8(image))
        out[index] = np.asarray(transform(pil).convert("RGB"), np.float32) / 255
    return out


def _linear_zoom_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of scipy.ndimage.zoom's order-1 resampling along one axis (output o samples
    input o * (in - 1) / (out - 1)): as a matrix it runs on a whole batch at once, 10x faster than zoom itself."""
    position = np.arange(size_out) * ((size_in - 1) / max(size_out - 1, 1))
    low = np.clip(np.floor(position).astype(np.int64), 0, size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    weight = position - low
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), low), 1 - weight)
    np.add.at(matrix, (np.arange(size_out), high), weight)
    return matrix


def _clipped_zoom(images: np.ndarray, factor: float) -> np.ndarray:
    """CIFAR-10-C's clipped_zoom: the centre 1/factor crop zoomed (linear, as scipy's zoom) back to full size.
    `images` (N, H, W[, C])."""
    matrices, crops = [], []
    for side in images.shape[1:3]:
        crop = int(np.ceil(side / factor))
        top = (side - crop) // 2
        size = int(round(crop * factor))
        trim = (size - side) // 2
        matrices.append(_linear_zoom_matrix(crop, size)[trim:trim + side].astype(images.dtype))
        crops.append(slice(top, top + crop))
    cropped = images[:, crops[0], crops[1]]
    rows, columns = matrices
    if cropped.ndim == 3:
        return np.einsum("oi,nij,pj->nop", rows, cropped, columns, optimize=True)
    return np.einsum("oi,nijc,pj->nopc", rows, cropped, columns, optimize=True)


def _motion_blur(images: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's MotionBlurImage: pixel (y, x) becomes the Gaussian-weighted mean of the 2*ceil(radius)+1
    pixels (y + round(i sin a), x + round(i cos a)), i = 0..width-1 (a one-sided trail), edges repeated."""
    width = int(2 * np.ceil(radius) + 1)
    taps = np.arange(width)
    weights = np.exp(-taps ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    count, height, side = images.shape[:3]
    radians = np.deg2rad(angles)[:, None]
    dx = np.ceil(taps[None] * np.cos(radians) - 0.5).astype(np.int64)  # (N, width): ImageMagick's rounding
    dy = np.ceil(taps[None] * np.sin(radians) - 0.5).astype(np.int64)
    rows, columns = np.arange(height)[None, :, None], np.arange(side)[None, None, :]
    which = np.arange(count)[:, None, None]
    out = np.zeros_like(images)
    for tap in range(width):
        y = np.clip(rows + dy[:, tap, None, None], 0, height - 1)
        x = np.clip(columns + dx[:, tap, None, None], 0, side - 1)
        out += weights[tap] * images[which, y, x]
    return out


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """CIFAR-10-C's defocus kernel: an aliased disk on a grid of at least 17 x 17, blurred by OpenCV's 3 x 3
    (5 x 5 past radius 8) Gaussian of sigma `alias_blur`."""
    half = max(8, int(np.ceil(radius)))
    grid = np.arange(-half, half + 1)
    x, y = np.meshgrid(grid, grid)
    disk = ((x ** 2 + y ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    taps = np.arange(3 if radius <= 8 else 5) - (1 if radius <= 8 else 2)
    gauss = np.exp(-taps ** 2 / (2 * alias_blur ** 2))
    gauss /= gauss.sum()
    return ndimage.convolve(disk, np.outer(gauss, gauss), mode="mirror")


def _plasma_fractal(count: int, side: int, decay: float, rng) -> np.ndarray:
    """(count, side, side) diamond-square height maps in [0, 1] (CIFAR-10-C's plasma_fractal, batched), from a
    map of the next power of two and cropped."""
    size = 1 << max(int(np.ceil(np.log2(side))), 1)
    maps = np.zeros((count, size, size))
    step, wibble = size, 100.0

    def wibbled_mean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        maps[:, half:size:step, half:size:step] = wibbled_mean(square)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = wibbled_mean(top)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    maps /= np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
    return maps[:, :side, :side]


def _gray(images: np.ndarray) -> np.ndarray:
    """OpenCV's RGB2GRAY (ITU-R 601 luma), keeping a channel axis."""
    return images @ np.array([0.299, 0.587, 0.114], images.dtype)[:, None]


# ---------------------------------------------------------------- CIFAR-10-C's 15 (14: frost is left out)


def gaussian_noise(x, severity, rng, scale):
    c = [0.04, 0.06, .08, .09, .10][severity - 1]
    return x + rng.normal(size=x.shape, scale=c)


def shot_noise(x, severity, rng, scale):
    c = [500, 250, 100, 75, 50][severity - 1]
    return rng.poisson(x * c) / c


def impulse_noise(x, severity, rng, scale):
    """scikit-image's random_noise(mode='s&p', amount=c): each value independently salt or pepper w.p. c."""
    c = [.01, .02, .03, .05, .07][severity - 1]
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(x.dtype), x)


def defocus_blur(x, severity, rng, scale):
    radius, alias_blur = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    kernel = _disk(_scaled(radius, scale), alias_blur * scale)
    return ndimage.convolve(x, kernel[None, :, :, None], mode="mirror")  # OpenCV's filter2D border: reflect-101


def glass_blur(x, severity, rng, scale):
    """Blur, then swap each pixel with a random neighbour (scanning from the bottom right), then blur again."""
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][severity - 1]
    sigma, delta = sigma * scale, max(1, round(delta * scale))
    x = _to_uint8(_gaussian(x, sigma))  # the script's uint8 round trip between the two blurs
    count, height, width = x.shape[:3]
    images = np.arange(count)
    for _ in range(iterations):
        for h in range(height - delta, delta, -1):
            for w in range(width - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2, count))  # [-delta, delta): as np.random.randint
                swapped = x[images, h + dy, w + dx].copy()
                x[images, h + dy, w + dx] = x[:, h, w]
                x[:, h, w] = swapped
    return _gaussian(x / 255.0, sigma)


def motion_blur(x, severity, rng, scale):
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    return _motion_blur(x, radius * scale, sigma * scale, rng.uniform(-45, 45, len(x)))


def zoom_blur(x, severity, rng, scale):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    factors = np.arange(1, top, 0.01)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return (x + out) / (len(factors) + 1)


def snow(x, severity, rng, scale):
    loc, spread, zoom, threshold, radius, sigma, keep = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][severity - 1]
    layer = _clipped_zoom(rng.normal(loc, spread, x.shape[:3]), zoom)
    layer[layer < threshold] = 0
    layer = np.uint8(np.clip(layer, 0, 1) * 255) / 255.0  # the script's 8-bit PNG hand-over to ImageMagick
    layer = _motion_blur(layer[..., None], radius * scale, sigma * scale, rng.uniform(-135, -45, len(x)))
    layer = np.round(layer * 255) / 255.0
    x = keep * x + (1 - keep) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2, axes=(1, 2))


def fog(x, severity, rng, scale):
    strength, decay = [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    fractal = _plasma_fractal(len(x), max(x.shape[1:3]), decay, rng)[:, :x.shape[1], :x.shape[2], None]
    return (x + strength * fractal) * peak / (peak + strength)


def brightness(x, severity, rng, scale):
    """HSV value + c: scaling each pixel's channels by V'/V is the same hue and saturation at the new value."""
    c = [.05, .1, .15, .2, .3][severity - 1]
    value = x.max(axis=-1, keepdims=True)
    brighter = np.minimum(value + c, 1)
    return np.where(value > 0, x * brighter / np.maximum(value, 1e-12), brighter)


def contrast(x, severity, rng, scale):
    c = [.75, .5, .4, .3, 0.15][severity - 1]
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def elastic_transform(x, severity, rng, scale):
    """A random affine (three points moved by up to c[2]), then a smooth random displacement field."""
    side = min(x.shape[1:3])
    alpha, sigma, affine = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                            (0.1, 0.03, 0.03)][severity - 1]
    alpha, sigma, affine = alpha * side, sigma * side, affine * side
    count, height, width = x.shape[:3]
    centre, square = np.float64([width, height]) // 2, side // 3
    points = np.float64([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty_like(x)
    for index in range(count):
        moved = points + rng.uniform(-affine, affine, size=points.shape)
        # OpenCV's warpAffine: destination pixel p samples the source at the inverse map of p
        forward = np.linalg.solve(np.c_[points, np.ones(3)], moved).T  # 2x3, source (x, y) -> destination
        inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
        source_x = inverse[0, 0] * columns + inverse[0, 1] * rows + inverse[0, 2]
        source_y = inverse[1, 0] * columns + inverse[1, 1] * rows + inverse[1, 2]
        warped = np.stack([ndimage.map_coordinates(x[index, ..., channel], [source_y, source_x], order=1,
                                                   mode="mirror") for channel in range(3)], axis=-1)
        dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (height, width)), sigma, mode="reflect", truncate=3) * alpha
        dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (height, width)), sigma, mode="reflect", truncate=3) * alpha
        out[index] = np.stack([ndimage.map_coordinates(warped[..., channel], [rows + dy, columns + dx], order=1,
                                                       mode="reflect") for channel in range(3)], axis=-1)
    return out


def pixelate(x, severity, rng, scale):
    from PIL import Image

    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]

    def blocky(image):
        small = image.resize((int(image.width * c), int(image.height * c)), Image.BOX)
        return small.resize(image.size, Image.BOX)
    return _per_image(x, blocky)


def _jpeg(quality: int):
    from PIL import Image

    def compress(image):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer)
    return compress


def jpeg_compression(x, severity, rng, scale):
    return _per_image(x, _jpeg([80, 65, 58, 50, 40][severity - 1]))


# ---------------------------------------------------------------- what users meet


def gif_web(x, severity, rng, scale):
    """What `image.save("x.gif")` does to a photo: Pillow's convert("P") — the 216-colour web palette with
    Floyd-Steinberg dithering."""
    return _per_image(x, lambda image: image.convert("P"))


def gif_adaptive(x, severity, rng, scale):
    """A GIF with a palette made for the image (median cut), 256 down to 16 colours, Floyd-Steinberg dithered."""
    from PIL import Image

    colours = [256, 128, 64, 32, 16][severity - 1]
    return _per_image(x, lambda image: image.quantize(colours, method=Image.Quantize.MEDIANCUT,
                                                      dither=Image.Dither.FLOYDSTEINBERG))


def jpeg_low(x, severity, rng, scale):
    """JPEG at the qualities of an over-compressed upload: 30 down to 10."""
    return _per_image(x, _jpeg([30, 25, 20, 15, 10][severity - 1]))


def downscale(x, severity, rng, scale):
    """A thumbnail scaled back up: down to 3/4 ... 1/4 of the side and back, bilinear both ways."""
    from PIL import Image

    share = [0.75, 0.5, 0.375, 0.3125, 0.25][severity - 1]

    def thumbnail(image):
        small = image.resize((max(1, round(image.width * share)), max(1, round(image.height * share))),
                             Image.BILINEAR)
        return small.resize(image.size, Image.BILINEAR)
    return _per_image(x, thumbnail)


def grayscale(x, severity, rng, scale):
    return np.repeat(_gray(x), 3, axis=-1)


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
        out[start:start + CHUNK] = _to_uint8(corrupted)
    return out
