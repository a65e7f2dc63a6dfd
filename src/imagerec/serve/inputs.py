"""Request bodies → pixel batches, for a worker thread (no web framework here): image files (decoded within the
request's limits and deadline) and TF Serving's predict documents."""

import base64
import binascii
import re
import time

import numpy as np

from imagerec.data import images as image_files
from imagerec.serve.limits import RequestError, ServeLimits, deadline_error


def decode_images(contents: list, image_size, limits: ServeLimits, deadline: float,
                  on_decoded=None) -> np.ndarray:
    """Image files [(name, bytes)] → uint8 (N, H, W, 3), for a worker thread; `on_decoded(count)` after.

    Every header is read first: one image over max_image_pixels, or all of them together over
    max_request_pixels, is refused (413) before any pixel is decoded; past `deadline` (time.monotonic())
    decoding stops between images (504). Unreadable files are 400.
    """
    total = 0
    for name, content in contents:
        total += _image_call(image_files.decode_work, content, name, image_size, limits.max_image_pixels)
    if total > limits.max_request_pixels:
        raise RequestError(413, f"the request's images add up to {total:,} pixels to decode, over the limit of "
                                f"{limits.max_request_pixels:,}")
    images = []
    for name, content in contents:
        if time.monotonic() > deadline:
            raise deadline_error("decoding images")
        images.append(_image_call(image_files.decode_image, content, name, image_size, limits.max_image_pixels))
    if on_decoded is not None:
        on_decoded(len(images))
    return np.stack(images)


def _image_call(function, content: bytes, name: str, image_size, max_pixels: int):
    if not content:
        raise RequestError(400, f"{name}: empty file")
    try:
        return function(content, image_size, max_pixels=max_pixels)
    except image_files.ImageTooLargeError as error:
        raise RequestError(413, f"{name}: {error}") from None
    except image_files.ImageDecodeError as error:
        raise RequestError(400, f"{name}: {error}") from None


def parse_json_body(body: bytes):
    """JSON → Python; RequestError 400 for anything that is not valid JSON (including nesting over 1,024 deep).

    orjson, not the standard library: 15.9 MB of pixel arrays parse in a fraction of json.loads' 0.36 s, which
    held the GIL (and so the event loop) throughout (BENCHMARKS.md).
    """
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if bytes(body[error.pos:error.pos + 4]).lstrip(b"-")[:3] in (b"NaN", b"Inf"):  # JavaScript's, not JSON's
            raise RequestError(400, "JSON Parse error: NaN or Infinity found; pixels must be finite numbers") from None
        raise RequestError(400, f"JSON Parse error: {str(error)[:200]}") from None


def predict_body_to_batch(body: bytes, input_name: str, input_shape, limits: ServeLimits, deadline: float,
                          on_decoded=None):
    """A TF Serving predict body (bytes) → (float32 batch, response key); all the work, for a worker thread."""
    return instances_to_batch(parse_json_body(body), input_name, input_shape, limits, deadline, on_decoded)


def parse_predict_body(body: bytes, input_name: str, input_shape, limits: ServeLimits, deadline: float) -> tuple:
    """`predict_body_to_batch` as (batch, key, images decoded): picklable both ways, for a worker process."""
    decoded = []
    batch, key = predict_body_to_batch(body, input_name, input_shape, limits, deadline, decoded.append)
    return batch, key, sum(decoded)


def instances_to_batch(request: dict, input_name: str, input_shape, limits: ServeLimits,
                       deadline: float = float("inf"), on_decoded=None):
    """A TF Serving predict body → (float32 (N, H, W, C) batch, "predictions" or "outputs").

    Accepts the row format {"instances": [...]} and the columnar {"inputs": [...]}; each instance is an
    H x W x 3 array of numbers in 0-255, {"b64": base64 image file} (any size; resized), or either of them
    under the model's input name ({input_name: ...}). Image files are decoded as `decode_images` does.
    """
    if not isinstance(request, dict):
        raise RequestError(400, 'the body must be a JSON object with "instances" or "inputs"')
    signature = request.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise RequestError(400, f"Serving signature name: \"{signature}\" not found in signature def")
    if ("instances" in request) == ("inputs" in request):
        raise RequestError(400, 'the body must have exactly one of "instances" or "inputs"')
    key = "instances" if "instances" in request else "inputs"
    instances = request[key]
    if isinstance(instances, dict) and key == "inputs":
        instances = _unwrap_named(instances, input_name)
    if not isinstance(instances, list):
        raise RequestError(400, f'"{key}" must be a list of images')
    if not instances:
        raise RequestError(400, f'"{key}" is empty')
    if len(instances) > limits.max_instances:
        raise RequestError(400, f'"{key}" has {len(instances)} images; the limit is {limits.max_instances}')
    images = [_instance_to_image(_unwrap_named(item, input_name), index, input_shape)
              for index, item in enumerate(instances)]
    files = [(f"instance {index}", image) for index, image in enumerate(images) if isinstance(image, bytes)]
    decoded = iter(decode_images(files, input_shape[:2], limits, deadline, on_decoded) if files else [])
    images = [next(decoded) if isinstance(image, bytes) else image for image in images]
    return np.stack(images).astype(np.float32), ("predictions" if key == "instances" else "outputs")


def _unwrap_named(item, input_name: str):
    if isinstance(item, dict) and "b64" not in item:
        if set(item) != {input_name}:
            raise RequestError(400, f"unknown input(s) {sorted(item)[:5]}; this model has one input, "
                                    f"\"{input_name}\"")
        return item[input_name]
    return item


def _instance_to_image(item, index: int, input_shape):
    """An instance → float32 pixels (H, W, C), or the bytes of an image file still to decode."""
    if isinstance(item, dict):
        if set(item) != {"b64"} or not isinstance(item["b64"], str):
            raise RequestError(400, f'instance {index}: expected {{"b64": "<base64 image>"}}')
        try:
            return base64.b64decode(item["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, f"instance {index}: b64 is not valid base64") from None
    try:
        pixels = np.asarray(item)
    except (ValueError, TypeError):  # ragged nesting, or deeper than numpy's 64 dimensions
        raise RequestError(400, f"instance {index}: not a rectangular array of numbers") from None
    if pixels.dtype.kind not in "iuf":
        raise RequestError(400, f"instance {index}: pixels must be numbers (got {_describe_dtype(pixels)})")
    if pixels.shape != tuple(input_shape):
        raise RequestError(400, f"instance {index}: shape {list(pixels.shape)} does not match the model's input "
                                f"{list(input_shape)} (height, width, channels)")
    return checked_pixels(pixels, f"instance {index}")


def checked_pixels(pixels: np.ndarray, what: str) -> np.ndarray:
    """Numbers → float32 pixels; RequestError 400 unless every one is finite and in 0-255."""
    if pixels.dtype != np.float32:  # checked before narrowing: 1e300 is out of range, not infinite
        pixels = pixels.astype(np.float64)
    if not np.isfinite(pixels).all():
        raise RequestError(400, f"{what}: pixels must be finite (NaN or Infinity found)")
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise RequestError(400, f"{what}: pixels must be in 0-255")
    return pixels.astype(np.float32, copy=False)


def _describe_dtype(array: np.ndarray) -> str:
    return {"b": "booleans", "U": "strings", "S": "strings", "O": "mixed values"}.get(array.dtype.kind,
                                                                                     str(array.dtype))


PAGE_TOP_K = 5  # labels the page shows per image, and /predict and /explain give without top_k


RAW_BODY_NAME = "body"  # the file name a raw image body is answered under


async def read_upload(request, default_top_k: int = PAGE_TOP_K) -> tuple:
    """([(filename, bytes)], top_k) of what /predict and /explain take: a multipart upload of one or more files,
    or one image file as the body itself (Content-Type image/... or application/octet-stream)."""
    state = request.app.state
    classifier, limits = state.classifier, state.limits
    shown = str(min(default_top_k, len(classifier.class_names)))  # 5, or every class of a smaller model
    top_k = parse_top_k(request.query_params.get("top_k", shown), len(classifier.class_names))
    if is_raw_image(request.headers.get("content-type", "")):
        return [(RAW_BODY_NAME, await request.body())], top_k
    form = await request.form(max_files=limits.max_images, max_fields=limits.max_images)
    uploads = [(key, value) for key, value in form.multi_items() if not isinstance(value, str)]
    if not uploads:
        raise RequestError(400, "no image in the request: POST multipart/form-data with one or more files, or "
                                "one image file as the body (Content-Type: image/jpeg, image/png, ...)")
    return [(upload.filename or key, await upload.read()) for key, upload in uploads], top_k


def is_raw_image(content_type: str) -> bool:
    """Whether a Content-Type says the body is one image file."""
    media_type = content_type.split(";")[0].strip().lower()
    return media_type.startswith("image/") or media_type == "application/octet-stream"


def parse_top_k(text: str, num_classes: int) -> int:
    # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and "١" or "５" (which it takes).
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= num_classes:
        raise RequestError(400, f"top_k must be a whole number from 1 to {num_classes}, got {text[:20]!r}")
    return int(text)
