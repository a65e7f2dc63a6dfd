"""imagerec's own Keras layers: patch whitening and the test-time views."""

import numpy as np
import pytest

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


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_computes_what_keras_batch_norm_does(policy):
    import keras
    import tensorflow as tf

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        images = tf.constant(np.random.default_rng(0).normal(2, 3, (8, 5, 5, 6)).astype(np.float32))
        keras_bn = keras.layers.BatchNormalization(momentum=0.6, epsilon=1e-12, scale=False)
        fused = layers.FusedBatchNormalization(momentum=0.6, epsilon=1e-12, scale=False)
        for layer in (keras_bn, fused):
            layer.build(images.shape)
            layer.beta.assign(np.arange(6.0))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(images)
            outputs = [layer(images, training=True) for layer in (keras_bn, fused)]
            losses = [tf.reduce_sum(tf.cast(output, tf.float32) ** 2) for output in outputs]
        assert outputs[1].dtype == outputs[0].dtype  # bf16 out under the mixed policy, as Keras'
        values = [np.asarray(output, np.float32) for output in outputs]
        np.testing.assert_allclose(values[1], values[0], atol=1e-5 if policy == "float32" else 0.02)
        input_gradients = [np.asarray(tape.gradient(loss, images)) for loss in losses]
        np.testing.assert_allclose(input_gradients[1], input_gradients[0], rtol=1e-3, atol=1e-3)
        bias_gradients = [np.asarray(tape.gradient(loss, layer.beta)) for loss, layer in zip(losses, (keras_bn, fused))]
        np.testing.assert_allclose(bias_gradients[1], bias_gradients[0], rtol=1e-4, atol=1e-3)
        for name in ("moving_mean", "moving_variance"):  # the running statistics follow the same average
            np.testing.assert_allclose(getattr(fused, name).numpy(), getattr(keras_bn, name).numpy(), rtol=1e-5)
        # inference mode is Keras' own code, on the running statistics
        np.testing.assert_allclose(np.asarray(fused(images), np.float32), np.asarray(keras_bn(images), np.float32),
                                   atol=1e-5 if policy == "float32" else 0.02)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_nets_built_outside_the_fused_block_have_keras_own_batch_norm():
    import keras

    from imagerec import models

    def batch_norms(net):
        return [type(layer) for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]

    with layers.fused_batch_norm():
        inside = models.build_model("airbench_small", 10)
    outside = models.build_model("airbench_small", 10)
    assert set(batch_norms(inside)) == {layers.FusedBatchNormalization} and len(batch_norms(inside)) == 6
    assert set(batch_norms(outside)) == {keras.layers.BatchNormalization}
