"""CIFAR-10-C's 15 corruptions (14: frost is left out) with CIFAR-10-C's own parameters, batched over images.

The constants are those of `hendrycks/robustness`, `ImageNet-C/create_c/make_cifar_c.py`; that script needs
scikit-image, OpenCV and ImageMagick and corrupts one image at a time, so the same operations are written here with
NumPy, SciPy and Pillow over whole batches (`data.corruptions` says how they differ from the script). Each takes
float32 images in [0, 1] (N, H, W, 3), a severity 1-5, a NumPy generator and the image's scale (shorter side / 32)
and returns floats (clipped by the caller).
"""

import io

import numpy as np
from scipy import ndimage


def _scaled(pixels: float, scale: float) -> float:
    return pixels * scale


def _gaussian(images: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """scikit-image's `filters.gaussian` (mode 'nearest', truncate 4) over the spatial axes of (N, H, W[, C])."""
    sigmas = (0, sigma, sigma) + (0,) * (images.ndim - 3)
    return ndimage.gaussian_filter(images, sigmas, mode=mode, truncate=truncate)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint8 truncated as CIFAR-10-C's np.uint8(), less float fuzz (k / 255 * 255 may be k - 1e-6)."""
    return np.uint8(np.clip(images, 0, 1) * 255 + 1e-3)


def per_image(images: np.ndarray, transform) -> np.ndarray:
    """A Pillow round trip image by image: `transform(PIL.Image) -> PIL.Image`, back as float in [0, 1]."""
    from PIL import Image

    out = np.empty_like(images)
    for index, image in enumerate(images):
        pil = Image.fromarray(to_uint8(image))
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


def gray(images: np.ndarray) -> np.ndarray:
    """OpenCV's RGB2GRAY (ITU-R 601 luma), keeping a channel axis."""
    return images @ np.array([0.299, 0.587, 0.114], images.dtype)[:, None]


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
    x = to_uint8(_gaussian(x, sigma))  # the script's uint8 round trip between the two blurs
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
    x = keep * x + (1 - keep) * np.maximum(x, gray(x) * 1.5 + 0.5)
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
    return per_image(x, blocky)


def jpeg(quality: int):
    from PIL import Image

    def compress(image):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer)
    return compress


def jpeg_compression(x, severity, rng, scale):
    return per_image(x, jpeg([80, 65, 58, 50, 40][severity - 1]))
