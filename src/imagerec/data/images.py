"""Image files → uint8 RGB arrays of one size, with the header and JPEG-marker checks that bound the work
before any pixel is decoded (`decode_image`, `decode_work`). Nothing here knows a data set or a model."""

import contextlib
import io

import numpy as np
from PIL import Image, ImageOps

from imagerec.data import jpeg_markers
from imagerec.errors import UserError


class ImageDecodeError(UserError):
    """A file that is not a readable image."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose header declares more pixels than the caller allows (checked before decoding)."""


def decode_image(source, image_size=(32, 32), max_pixels: int | None = None) -> np.ndarray:
    """Decode a path, bytes or file object into a uint8 RGB array of shape (height, width, 3).

    Grayscale, palette, CMYK, 16-bit and transparent images become RGB (transparency over white);
    EXIF rotation is applied; then the image is resized so that it covers `image_size` (height, width) and
    its center cropped to it (an image of the same aspect ratio is simply resized; nothing is stretched). A JPEG
    much larger than that is decoded at a reduced scale (1/2, 1/4 or 1/8, still at least `image_size`) first.
    Only IMAGE_FORMATS are opened (Pillow's plugins for some others, ICO and ICNS, decode while opening).
    Raises ImageTooLargeError when the header declares more than `max_pixels` (default: Pillow's
    decompression-bomb limit), or a JPEG more than MAX_JPEG_SCANS scans, before any pixel is decoded, and
    ImageDecodeError for anything Pillow cannot fully decode (truncated, not an image).
    """
    with _opened(source, image_size, max_pixels) as (image, _):
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
            height, width = image_size
            if rgb.size != (width, height):
                # ImageOps.fit: crop to the target's aspect ratio around the center, then resize (bilinear).
                rgb = ImageOps.fit(rgb, (width, height), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
        # Untrusted files fail in many ways (OSError, SyntaxError, struct.error...).
        except Exception as error:  # noqa: BLE001
            raise ImageDecodeError(_describe_decode_error(error)) from error


def decode_work(source, image_size=(32, 32), max_pixels: int | None = None) -> int:
    """The work `decode_image` would do, in pixels decoded, read from the header and markers only.

    A server sums it over a request to bound that work before decoding anything. Most formats: width x
    height. A JPEG: the pixels at the reduced scale it is decoded at, plus an eighth of its full size for each
    scan, since libjpeg reads every scan's coefficients at full size (measured here: ~1 ns per full-size pixel
    and scan, against ~8 ns per pixel decoded). Raises as `decode_image` does for a header over `max_pixels`,
    a scan bomb or an unreadable file.
    """
    with _opened(source, image_size, max_pixels) as (image, jpeg):
        scans_work = 0 if jpeg is None else jpeg.width * jpeg.height * jpeg.scans // 8
        return image.width * image.height + scans_work


def decode_at_most(source, max_side: int) -> tuple:
    """(uint8 RGB array whose longer side is at most `max_side`, aspect kept; the file's own (width, height);
    its mode, such as "RGB" or "L"): a file seen about as it is, for checks of the file itself (the doctor's
    image issues), with `decode_image`'s header checks. Raises as `decode_image` does."""
    with _opened(source, (max_side, max_side), None) as (image, jpeg):
        size, mode = ((jpeg.width, jpeg.height) if jpeg is not None and jpeg.width else image.size), image.mode
        try:
            image.load()
            rgb = _to_rgb(ImageOps.exif_transpose(image))
            rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8), size, mode
        except Exception as error:  # noqa: BLE001
            raise ImageDecodeError(_describe_decode_error(error)) from error


# The formats imagerec opens: what cameras, phones, screenshots and data sets use. Pillow's ICO and ICNS
# plugins decode the largest embedded image while "opening" (before any size check), others are rare enough
# to be more risk than use. (Pillow's JPEG plugin also opens phones' MPO files, as format "MPO".)
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM")
# libjpeg-turbo's `djpeg -maxscans` idea: a progressive JPEG has about 10 scans (Pillow's, libjpeg's default
# script) and rarely more than 20; 1,000 repeated scans are an attack (each one costs a full-size pass).
MAX_JPEG_SCANS = 100


@contextlib.contextmanager
def _opened(source, image_size, max_pixels):
    """(image with only its header read, its JpegStructure or None): checked against `max_pixels`, a JPEG
    checked for scan bombs and truncation, and set to decode reduced."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        image = Image.open(source, formats=IMAGE_FORMATS)  # the header only (and warns above ~89 Mpixels)
    except Image.DecompressionBombError as error:  # over twice Pillow's own limit, refused at open
        raise ImageTooLargeError(_describe_decode_error(error)) from error
    except Exception as error:  # noqa: BLE001
        raise ImageDecodeError(_describe_decode_error(error)) from error
    with image:
        _check_pixel_count(image, max_pixels)
        jpeg = None
        if image.format in ("JPEG", "MPO"):
            jpeg = _checked_jpeg(image)
            # libjpeg scales while decoding (DCT scaling): decoding a 4000x3000 photo for a 32x32 model at 1/8
            # costs 1/64 of the full decode. The side is the larger of the two, since EXIF may rotate it.
            side = max(image_size)
            try:
                image.draft(None, (side, side))
            except Exception as error:  # noqa: BLE001
                raise ImageDecodeError(_describe_decode_error(error)) from error
        yield image, jpeg


def _checked_jpeg(image) -> jpeg_markers.JpegStructure:
    """The markers of the JPEG `image` was opened from (read again from its start, its position kept)."""
    position = image.fp.tell()
    try:
        image.fp.seek(0)
        structure = jpeg_markers.read_structure(image.fp.read())
    except (OSError, jpeg_markers.MalformedJpeg) as error:
        raise ImageDecodeError(f"not a well-formed JPEG: {error}") from error
    finally:
        image.fp.seek(position)
    if structure.scans > MAX_JPEG_SCANS:
        raise ImageTooLargeError(f"JPEG has {structure.scans:,} scans, over the limit of {MAX_JPEG_SCANS} (each "
                                 f"one is decoded over the whole image)")
    if structure.looks_truncated:
        raise ImageDecodeError(f"truncated JPEG: {structure.entropy_bytes:,} bytes of image data cannot hold the "
                               f"{structure.width}x{structure.height} its header declares")
    return structure


def _check_pixel_count(image, max_pixels) -> None:
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ImageTooLargeError(f"image is {image.width}x{image.height} = {image.width * image.height:,} pixels, "
                                 f"over the limit of {max_pixels:,}")


def _describe_decode_error(error: Exception) -> str:
    if isinstance(error, Image.UnidentifiedImageError):
        return f"not an image, or not one of {', '.join(IMAGE_FORMATS)}"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's own I;16 → RGB conversion clips at 255; keep the top 8 of 16 bits instead.
        pixels = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        image = Image.fromarray(pixels.astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")

