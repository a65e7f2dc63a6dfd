"""The airbench nets: airbench94's size, dirac init, whitening, and a stem for any input size."""

import numpy as np
import pytest

from imagerec import models


def test_airbench_model_matches_airbench94_size():
    net = models.build_model("airbench", 10)
    # airbench94: 1.97 M; Keras also counts BatchNorm's running mean and variance
    convolutions = 9 * (24 * 64 + 64 * 64 + 64 * 256 + 256 * 256 + 256 * 256 + 256 * 256)
    batch_norms = 3 * 2 * (64 + 256 + 256)  # beta, moving mean, moving variance; scale frozen at 1
    assert models.count_params(net) == 2 * 2 * 3 * 24 + 2 * 24 + convolutions + batch_norms + 256 * 10
    assert models.forward_flops(net) / 1e9 == pytest.approx(0.236, abs=0.001)
    assert models.forward_flops(models.build_model("airbench_small", 10)) < models.forward_flops(net) / 5


def test_airbench_convolutions_start_as_partial_identities():
    net = models.build_model("airbench", 10)
    kernel = net.get_layer("block2_conv1").kernel.numpy()  # 64 in, 256 out
    assert kernel[1, 1, np.arange(64), np.arange(64)].tolist() == [1.0] * 64
    assert np.count_nonzero(kernel[:, :, :, :64]) == 64
    assert np.count_nonzero(kernel[:, :, :, 64:]) > 0  # the remaining filters stay random


def test_init_airbench_net_sets_whitening_from_data():
    net = models.build_model("airbench_small", 10)
    images = np.random.default_rng(1).integers(0, 256, (50, 32, 32, 3)).astype(np.uint8)
    before = net.get_layer("whiten").kernel.numpy().copy()
    models.init_airbench_net(net, images)
    after = net.get_layer("whiten").kernel.numpy()
    assert not np.allclose(before, after)
    assert net.get_layer("whiten").offset.numpy().any()


@pytest.mark.parametrize("side, stem, final_map", [(32, (2, 1, 0), 3), (40, (2, 1, 0), 4), (64, (2, 2, 0), 4),
                                                   (96, (4, 4, 0), 3), (128, (4, 4, 0), 4), (224, (4, 4, 1), 3)])
def test_the_airbench_stem_brings_any_size_to_a_cifar_sized_map(side, stem, final_map):
    assert models.stem_for((side, side, 3)) == stem
    net = models.build_model("airbench_small", 5, (side, side, 3))
    assert net.get_layer("block3_bn2").output.shape[1] == final_map
    logits = net(np.zeros((2, side, side, 3), np.float32))
    assert logits.shape == (2, 5)


def test_larger_inputs_cost_a_few_times_cifar_not_the_square_of_the_side():
    flops = {side: models.forward_flops(models.build_model("airbench", 10, (side, side, 3))) for side in (32, 64, 128, 224)}
    assert flops[32] / 1e9 == pytest.approx(0.236, abs=0.001)  # unchanged at CIFAR-10's size
    assert all(flops[side] < 2.5 * flops[32] for side in (64, 128, 224)), flops  # vs 4x, 16x, 49x unreduced


def test_a_strided_whitening_stem_whitens_the_patches_it_sees():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(40, 66, 66, 3))
    smooth = sum(noise[:, row:row + 64, column:column + 64] for row in range(3) for column in range(3))  # 3x3 box
    images = np.clip(128 + 10 * smooth, 0, 255).astype(np.uint8)  # neighbours correlated, like photos
    net = models.build_model("airbench_small", 3, (64, 64, 3))
    models.init_airbench_net(net, images)
    whiten = net.get_layer("whiten")
    features = np.asarray(whiten(images.astype(np.float32))).reshape(-1, whiten.filters)[:, :12]
    covariance = np.cov(features - whiten.bias.numpy()[:12], rowvar=False)
    np.testing.assert_allclose(np.diag(covariance), 1.0, atol=0.1)  # eigen-directions with variance well above eps
    assert np.abs(covariance - np.diag(np.diag(covariance))).max() < 0.1
