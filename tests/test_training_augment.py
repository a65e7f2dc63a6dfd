"""Augmentation tested eagerly and inside tf.data: the two paths differ more often than one expects."""

import keras
import numpy as np
import tensorflow as tf

from imagerec.training import augment


def _batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (16, 32, 32, 3)).astype(np.uint8), np.arange(16, dtype=np.int32)


def _check_flips(images, augmented):
    for original, result in zip(images.astype(np.float32), np.asarray(augmented)):
        assert np.array_equal(result, original) or np.array_equal(result, original[:, ::-1])


def _shift_and_flip_in_tf_data(images, labels, shift_fraction, horizontal_flip, seed, batch_size):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).enumerate().map(
        lambda step, batch: (augment.random_shift_and_flip(tf.cast(batch[0], tf.float32), shift_fraction,
                                                           horizontal_flip, tf.stack([tf.constant(seed, tf.int64),
                                                                                      step])), batch[1]))
    outputs = list(dataset.as_numpy_iterator())
    return (np.concatenate([batch for batch, _ in outputs]),
            np.concatenate([batch_labels for _, batch_labels in outputs]))


def test_flip_only_mirrors_or_keeps_each_image_eagerly():
    images, _ = _batch()
    augmented = augment.random_shift_and_flip(tf.cast(images, tf.float32), 0.0, True, [3, 0])
    _check_flips(images, augmented)


def test_flip_only_mirrors_or_keeps_each_image_in_tf_data():
    images, labels = _batch()
    augmented, augmented_labels = _shift_and_flip_in_tf_data(images, labels, 0.0, True, seed=3, batch_size=8)
    np.testing.assert_array_equal(augmented_labels, labels)
    _check_flips(images, augmented)
    mirrored = sum(not np.array_equal(result, original) for result, original in zip(augmented, images))
    assert 0 < mirrored < 16  # random, not all-or-nothing


def test_shift_keeps_shape_range_and_changes_images():
    images, labels = _batch()
    augmented, _ = _shift_and_flip_in_tf_data(images, labels, 0.1, False, seed=5, batch_size=16)
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0 and augmented.max() <= 255
    assert not np.allclose(augmented, images)


def test_shift_and_flip_depend_only_on_their_seed_and_match_eager_in_tf_data():
    images, labels = _batch()
    eager = [augment.random_shift_and_flip(tf.cast(images[start:start + 8], tf.float32), 0.1, True,
                                           tf.constant([5, step], tf.int64))
             for step, start in enumerate((0, 8))]
    in_graph, _ = _shift_and_flip_in_tf_data(images, labels, 0.1, True, seed=5, batch_size=8)
    np.testing.assert_allclose(np.concatenate(eager), in_graph, atol=1e-4)
    again, _ = _shift_and_flip_in_tf_data(images, labels, 0.1, True, seed=5, batch_size=8)
    other, _ = _shift_and_flip_in_tf_data(images, labels, 0.1, True, seed=6, batch_size=8)
    assert np.array_equal(again, in_graph) and not np.allclose(other, in_graph)


def test_shift_moves_each_image_within_the_fraction_and_repeats_the_edge():
    # Ramps: channel 0 grows along x, channel 1 along y, so a (sub-pixel, bilinear) shift by (dx, dy) lowers
    # every interior pixel by exactly 4 dx and 4 dy, and an edge repeated ("nearest") never brings in zeros.
    ramp = np.zeros((32, 32, 3), np.float32)
    ramp[..., 0], ramp[..., 1] = np.meshgrid(10 + 4 * np.arange(32), 10 + 4 * np.arange(32))
    images = np.repeat(ramp[np.newaxis], 64, axis=0)
    shifted = np.asarray(augment.random_shift_and_flip(tf.constant(images), 0.1, False, [7, 0]))
    interior = slice(6, 26)
    dx = (images - shifted)[:, interior, interior, 0] / 4
    dy = (images - shifted)[:, interior, interior, 1] / 4
    assert np.allclose(dx, dx[:, :1, :1], atol=1e-3) and np.allclose(dy, dy[:, :1, :1], atol=1e-3)
    assert np.abs(dx).max() <= 3.2 + 1e-3 and np.abs(dy).max() <= 3.2 + 1e-3  # 10% of 32 pixels
    assert np.abs(dx).max() > 1 and np.abs(dy).max() > 1 and shifted[..., :2].min() >= 10


def _shift_of(original, shifted, pixels):
    """The (dy, dx) whose reflect-padded crop of `original` equals `shifted`, or None."""
    padded = np.pad(original, [(pixels, pixels), (pixels, pixels), (0, 0)], mode="reflect")
    size = original.shape[0]
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            if np.array_equal(padded[dy:dy + size, dx:dx + size], shifted):
                return dy - pixels, dx - pixels
    return None


def test_translate_and_flip_shifts_each_image_by_its_offset_and_mirrors_where_asked():
    images, _ = _batch()
    offsets = np.array([[row, column] for row in range(5) for column in range(5)][:16], np.int32)
    flips = np.arange(16) % 3 == 0
    result = keras.ops.convert_to_numpy(augment.translate_and_flip(images, offsets, flips, 2))
    assert result.shape == images.shape and result.dtype == np.float32
    for image, shifted, (row, column), flip in zip(images, result, offsets, flips):
        unflipped = shifted[:, ::-1] if flip else shifted
        assert _shift_of(image, unflipped, 2) == (row - 2, column - 2)
    centred = keras.ops.convert_to_numpy(augment.translate_and_flip(images, np.full((16, 2), 2), flips * 0 > 0, 2))
    np.testing.assert_array_equal(centred, images)  # offset `pixels` on both axes: the image itself


def test_translate_and_flip_gives_the_same_batch_compiled_in_tf_data():
    images, _ = _batch()
    offsets = np.random.default_rng(1).integers(0, 5, (16, 2)).astype(np.int32)
    flips = np.random.default_rng(2).random(16) < 0.5
    eager = keras.ops.convert_to_numpy(augment.translate_and_flip(images, offsets, flips, 2))
    dataset = tf.data.Dataset.from_tensors((images, offsets, flips)).map(
        lambda x, o, f: augment.translate_and_flip(x, o, f, 2))
    np.testing.assert_array_equal(eager, next(dataset.as_numpy_iterator()))


def test_resized_crop_takes_each_images_box_and_resizes_it_back():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 16, 3)).astype(np.float32)
    images[2, :, :8], images[2, :, 8:] = 10.0, 200.0  # left half dark, right half bright
    boxes = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5], [0, 0, 1, 0.5]], np.float32)
    result = keras.ops.convert_to_numpy(augment.resized_crop(images, boxes))
    np.testing.assert_allclose(result[0], images[0], atol=1e-3)  # the whole image: unchanged
    rows, columns = np.mgrid[0:16, 0:16].astype(np.float32)
    images[1] = (3 * rows + 5 * columns)[..., None]  # linear: bilinear interpolation of it is exact
    result = keras.ops.convert_to_numpy(augment.resized_crop(images, boxes))
    # The top-left quarter, 2x: output pixel centre y + 0.5 samples input row (y + 0.5) / 2 - 0.5, likewise x.
    expected = 3 * ((rows + 0.5) / 2 - 0.5) + 5 * ((columns + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(result[1][1:, 1:, 0], expected[1:, 1:], atol=1e-3)  # row/column 0: reflected
    # only the left half, stretched over the whole (the last column samples 1/4 px into the bright half)
    np.testing.assert_allclose(result[2][:, :-1], 10.0, atol=1e-3)


def test_resized_crop_gives_the_same_batch_compiled_in_tf_data():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 24, 24, 3)).astype(np.float32)
    boxes = np.array([[0.1, 0.2, 0.6, 0.7], [0, 0, 1, 1], [0.3, 0.0, 0.7, 0.5], [0.5, 0.5, 0.5, 0.5]], np.float32)
    eager = keras.ops.convert_to_numpy(augment.resized_crop(images, boxes))
    dataset = tf.data.Dataset.from_tensors((images, boxes)).map(lambda x, b: augment.resized_crop(x, b))
    np.testing.assert_allclose(next(iter(dataset)).numpy(), eager, atol=1e-4)


def test_corruption_augmentation_does_what_each_kind_says():
    """kind 0 and strength 0 leave an image alone; noise adds the planned plane times strength x 25.5; blur and
    low contrast take away spread; the palette leaves 6 levels a channel (GIF's web palette); glass moves most
    pixels by 1-2 px and makes no new values."""
    from imagerec.training import airbench

    rng = np.random.default_rng(1)
    images = rng.integers(30, 226, (8, 32, 32, 3)).astype(np.float32)
    bank = augment.noise_bank(0, (32, 32, 3))
    plan = np.array([[0, 1.0, 3], [1, 0.0, 3], [1, 0.5, 3], [2, 1.0, 0], [3, 1.0, 0], [4, 1.0, 5], [5, 1.0, 63],
                     [5, 0.0, 2]], np.float32)
    out = np.asarray(augment.corrupt_planned(images, plan, bank))
    np.testing.assert_array_equal(out[:2], images[:2])
    np.testing.assert_allclose(out[2], np.clip(images[2] + 0.5 * augment.NOISE_SIGMA * bank[3], 0, 255), atol=1e-3)
    assert np.abs(np.diff(out[3], axis=0)).mean() < 0.7 * np.abs(np.diff(images[3], axis=0)).mean()  # blurred
    assert out[4].std() < 0.2 * images[4].std()  # contrast at 0.15
    assert set(np.unique(out[5])) <= {0, 51, 102, 153, 204, 255}
    assert 0.6 < (out[6] != images[6]).any(axis=-1).mean() < 0.9 and np.array_equal(out[7], images[7])
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(images[6], ((2, 2), (2, 2), (0, 0)), mode="edge"),
                                                       (5, 5), axis=(0, 1))  # (32, 32, 3, 5, 5)
    assert (windows == out[6][..., None, None]).all(axis=2).any(axis=(-1, -2)).all()  # each pixel from <= 2 px
    share = airbench.epoch_plan(2000, 1000, seed=0, epoch=0, translate=2, alternating_flip=True,
                                corruption_share=0.3)["corrupt"][..., 0]
    assert abs((share > 0).mean() - 0.3) < 0.03 and set(np.unique(share)) == set(range(len(augment.CORRUPTION_KINDS)))
    off = airbench.epoch_plan(100, 50, seed=0, epoch=0, translate=2, alternating_flip=True)["corrupt"][..., 0]
    assert not off.any()
