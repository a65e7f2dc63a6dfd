"""Request bodies to pixels: limits read from image headers, and decoding within the request's deadline."""

import base64
import time

import numpy as np
import pytest

from imagerec.serve import ServeLimits, create_app

from serve_helpers import (request, png_bytes, assert_error, one_bit_bomb_b64)

httpx = pytest.importorskip("httpx")


def test_image_over_the_pixel_limit_is_refused_before_decoding(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(max_image_pixels=64 * 64))
    big = png_bytes(np.zeros((65, 64, 3)))
    assert_error(request(app, "POST", "/predict", files={"file": ("big.png", big)}), 413, "over the limit of 4,096")
    encoded = {"instances": [{"b64": base64.b64encode(big).decode()}]}
    assert_error(request(app, "POST", "/v1/models/cifar10:predict", json=encoded), 413, "pixels")
    assert request(app, "POST", "/predict", files={"file": ("ok.png", png_bytes(np.zeros((64, 64, 3))))}).status_code == 200


def test_many_large_images_in_one_request_are_refused_from_their_headers(classifier):
    """64 images of 39.7 Mpixels each: ~18 s of decoding before the per-request pixel budget existed."""
    app = create_app(classifier, "cifar10")
    bomb = one_bit_bomb_b64()
    started = time.monotonic()
    response = request(app, "POST", "/v1/models/cifar10:predict", json={"instances": [{"b64": bomb}] * 64})
    assert_error(response, 413, "add up to 2,540,160,000 pixels")
    assert time.monotonic() - started < 5  # refused from the headers, not after decoding them
    files = [("file", (f"{index}.png", base64.b64decode(bomb))) for index in range(2)]
    assert_error(request(app, "POST", "/predict", files=files), 413, "over the limit of 64,000,000")


def test_the_deadline_covers_decoding(classifier):
    """With the pixel budget lifted, decoding stops at the request's deadline instead of answering 200 later."""
    app = create_app(classifier, "cifar10", ServeLimits(timeout_s=1, max_request_pixels=10**10))
    started = time.monotonic()
    response = request(app, "POST", "/v1/models/cifar10:predict",
                       json={"instances": [{"b64": one_bit_bomb_b64()}] * 64})
    assert_error(response, 504, "deadline")
    assert time.monotonic() - started < 5


def test_decode_images_stops_at_its_deadline_before_decoding():
    from imagerec.serve import RequestError, decode_images

    with pytest.raises(RequestError) as error:
        decode_images([("a.png", png_bytes(np.zeros((8, 8, 3))))], (32, 32), ServeLimits(), time.monotonic() - 1)
    assert error.value.status == 504
