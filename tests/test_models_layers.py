"""imagerec's own Keras layers: patch whitening and the test-time views."""

import numpy as np

from imagerec.models import layers


def test_whitening_init_decorrelates_patches():
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, (64, 33, 33, 3))
    smooth = noise[:, 1:, 1:] + noise[:, :-1, 1:] + noise[:, 1:, :-1]  # neighbouring pixels correlate
    smooth[..., 1] = 0.5 * smooth[..., 0] + 0.5 * smooth[..., 1]  # and so do the channels
    images = 40 * smooth + 20
    kernel, offset = layers.whitening_parameters(images.astype(np.uint8))
    assert kernel.shape == (2, 2, 3, 24) and offset.shape == (24,)
    layer = layers.PatchWhitening(24)
    layer.build((None, 32, 32, 3))
    layer.kernel.assign(kernel)
    layer.offset.assign(offset)
    outputs = np.asarray(layer(images.astype(np.float32))).reshape(-1, 24)
    first_half = outputs[:, :12]
    np.testing.assert_allclose(outputs[:, 12:], -first_half, atol=1e-4)  # eigenvectors and negations
    assert np.abs(first_half.mean(axis=0)).max() < 0.05  # centred: the offset folds in the mean
    covariance = np.cov(first_half.T)
    np.testing.assert_allclose(covariance, np.diag(np.diag(covariance)), atol=0.05)
    assert np.all(np.abs(np.diag(covariance) - 1) < 0.1)


def test_test_time_views_are_the_six_airbench_views():
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    views = layers.TestTimeViews()(images[:2].astype(np.float32)).numpy().reshape(6, 2, 32, 32, 3)
    padded = np.pad(images[:2], [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect").astype(np.float32)
    expected = [images[:2], images[:2, :, ::-1], padded[:, :32, :32], padded[:, :32, :32][:, :, ::-1],
                padded[:, 2:, 2:], padded[:, 2:, 2:][:, :, ::-1]]
    for view, wanted in zip(views, expected):
        np.testing.assert_array_equal(view, wanted)
    logits = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    averaged = layers.TestTimeAverage()(logits).numpy()
    weights = np.array(layers.TestTimeViews.VIEW_WEIGHTS)
    np.testing.assert_allclose(averaged, np.tensordot(weights, logits.reshape(6, 2, 5), axes=1), rtol=1e-6)
