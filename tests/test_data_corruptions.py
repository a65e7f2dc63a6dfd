"""Corruptions: CIFAR-10-C's formulas, deterministic for a seed, stronger with each severity, uint8 of the input's
shape at any size, the input untouched; the GIF transform really a palette image."""

import colorsys

import numpy as np
import pytest
from scipy import ndimage

from helpers import synthetic_image
from imagerec.data import cifar_c, corruptions
from imagerec.errors import UserError

# CIFAR-10-C's own parameters are not monotone in pixel distance for these two: glass blur's severity 1 shuffles
# with almost no blur (the blur of later ones smooths the shuffle back), elastic's severity 1 has the largest
# affine jitter (0.08 of the side, falling to 0.03 at 5). Measured on 256 test images of CIFAR-10 (JPEG copy):
# glass 14.2, 14.0, 13.0, 18.3, 16.8; elastic 18.8, 17.0, 15.5, 13.9, 11.7 (mean |difference|, 0-255).
NOT_MONOTONE = {"glass_blur", "elastic_transform"}
# Motion blur's severities 3 and 4 are trails of radius 6 and 8 at the same sigma 2: ImageMagick's Gaussian taps
# past 6 px weigh under 1.2%, so the two are equally strong, to the random angles' noise.
TIED = {"motion_blur": {(3, 4)}}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return np.stack([synthetic_image(label % 4, rng) for label in range(24)])


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_each_corruption_is_seeded_uint8_of_the_input_shape_and_leaves_the_input_alone(images, name):
    before = images.copy()
    first = corruptions.corrupt(images, name, 1, seed=3)
    assert first.dtype == np.uint8 and first.shape == images.shape
    np.testing.assert_array_equal(images, before)
    np.testing.assert_array_equal(first, corruptions.corrupt(images, name, 1, seed=3))
    assert not np.array_equal(first, images)


@pytest.mark.parametrize("name", [name for name, corruption in corruptions.CORRUPTIONS.items()
                                  if corruption.levels == 5 and name not in NOT_MONOTONE])
def test_each_severity_distorts_more_than_the_one_before(images, name):
    distances = [np.abs(corruptions.corrupt(images, name, severity).astype(float) - images).mean()
                 for severity in corruptions.SEVERITIES]
    for severity, (earlier, later) in enumerate(zip(distances, distances[1:]), start=1):
        if (severity, severity + 1) in TIED.get(name, ()):
            assert abs(later - earlier) <= 0.02 * earlier, distances
        else:
            assert later > earlier, distances


@pytest.mark.parametrize("name", ["gaussian_noise", "glass_blur", "snow", "fog", "elastic_transform"])
def test_random_corruptions_differ_between_seeds(images, name):
    assert not np.array_equal(corruptions.corrupt(images, name, 3, seed=0), corruptions.corrupt(images, name, 3, seed=1))


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_any_image_size_works(name):
    rng = np.random.default_rng(1)
    tall = rng.integers(0, 256, (2, 80, 64, 3)).astype(np.uint8)
    out = corruptions.corrupt(tall, name, corruptions.CORRUPTIONS[name].levels)
    assert out.shape == tall.shape and out.dtype == np.uint8


def test_the_web_palette_gif_is_a_palette_image(images):
    """Pillow's convert("P"): every colour on the 6x6x6 web cube (steps of 51), and Floyd-Steinberg dithered (a
    flat colour between two palette entries becomes a mix of them, not one)."""
    out = corruptions.corrupt(images, "gif_web", 1)
    assert set(np.unique(out)) <= set(range(0, 256, 51))
    flat = np.full((1, 32, 32, 3), 100, np.uint8)  # between 51 and 102
    assert set(np.unique(corruptions.corrupt(flat, "gif_web", 1))) == {51, 102}


def test_contrast_and_brightness_are_cifar_10_cs_formulas(images):
    x = images[:4].astype(np.float64) / 255
    means = x.mean(axis=(1, 2), keepdims=True)
    expected = np.uint8(np.clip((x - means) * 0.4 + means, 0, 1) * 255 + 1e-3)  # severity 3: c = 0.4
    np.testing.assert_array_equal(corruptions.corrupt(images[:4], "contrast", 3), expected)
    # brightness: HSV value + c (c = 0.15 at severity 3), per pixel with the standard library's colorsys
    pixels = x[0].reshape(-1, 3)
    reference = np.array([colorsys.hsv_to_rgb(h, s, min(v + 0.15, 1)) for h, s, v in
                          (colorsys.rgb_to_hsv(*pixel) for pixel in pixels)]).reshape(x[0].shape)
    got = corruptions.corrupt(images[:1], "brightness", 3)[0].astype(float)
    assert np.abs(got - reference * 255).max() <= 1.0


def test_the_zoom_matches_scipys_zoom_that_cifar_10_c_calls(images):
    x = images.astype(np.float32) / 255
    for factor in (1.01, 1.13, 1.25):
        crop = int(np.ceil(32 / factor))
        top = (32 - crop) // 2
        reference = ndimage.zoom(x[:, top:top + crop, top:top + crop], (1, factor, factor, 1), order=1)
        trim = (reference.shape[1] - 32) // 2
        np.testing.assert_allclose(cifar_c._clipped_zoom(x, factor),
                                   reference[:, trim:trim + 32, trim:trim + 32], atol=1e-5)


def test_names_and_severities_are_checked():
    assert corruptions.parse_names("all") == tuple(corruptions.CORRUPTIONS)
    assert len(corruptions.parse_names("cifar10c")) == 14
    assert corruptions.parse_names("contrast, gif_web,contrast") == ("contrast", "gif_web")
    assert corruptions.parse_severities("1-5") == (1, 2, 3, 4, 5)
    assert corruptions.parse_severities("5,1") == (1, 5)
    for bad in ("blurr", "frost", ""):
        with pytest.raises(UserError, match="corruption"):
            corruptions.parse_names(bad)
    for bad in ("0-3", "6", "a-b", "", "2-1"):
        with pytest.raises(UserError, match="severities"):
            corruptions.parse_severities(bad)
    with pytest.raises(UserError, match="uint8"):
        corruptions.corrupt(np.zeros((2, 8, 8), np.uint8), "contrast", 1)
    with pytest.raises(UserError, match="severities 1-1"):
        corruptions.corrupt(np.zeros((1, 8, 8, 3), np.uint8), "grayscale", 2)
