import keras
import numpy as np
import pytest

from imagerec.training import optim


def test_triangle_schedule_rises_then_falls():
    schedule = optim.TriangleSchedule(peak=2.0, total_steps=100, start=0.2, peak_at=0.23, end=0.07)
    values = [float(schedule(step)) for step in range(101)]
    assert values[0] == pytest.approx(0.4)
    assert max(values) == pytest.approx(2.0) and int(np.argmax(values)) == 23
    assert values[100] == pytest.approx(0.14)
    assert all(a <= b for a, b in zip(values[:23], values[1:24]))
    assert all(a >= b for a, b in zip(values[23:], values[24:]))


def _lookahead(total_steps, every=1):
    inputs = keras.Input((2,))
    net = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))
    callback = optim.Lookahead(net, optim.LookaheadState(net), total_steps=total_steps, steps_per_epoch=100,
                               start_epoch=0, every=every, decay=0.5, power=0.0)
    callback.set_model(net)
    callback.on_epoch_begin(0)
    return callback, net.layers[-1].kernel


def test_lookahead_averages_weights_and_writes_them_back():
    callback, kernel = _lookahead(total_steps=3)
    kernel.assign(np.zeros((2, 1), np.float32))
    callback.on_train_batch_end(0)  # step 1, the first update: remembers the weights
    kernel.assign(np.ones((2, 1), np.float32))
    callback.on_train_batch_end(1)  # rho = 0.5: average = 0.5 * 0 + 0.5 * 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), 0.5)
    kernel.assign(np.full((2, 1), 3.0, np.float32))
    callback.on_epoch_end(0)  # mid-run epoch ends leave the net's own weights alone
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), 3.0)
    callback.on_train_batch_end(2)  # the last step: one more update (0.5 * 0.5 + 0.5 * 3), then the average
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), 1.75)


def test_lookahead_final_step_writes_the_average_even_between_updates():
    callback, kernel = _lookahead(total_steps=3, every=2)
    kernel.assign(np.zeros((2, 1), np.float32))
    callback.on_train_batch_end(1)  # step 2, the first update: remembers 0
    kernel.assign(np.full((2, 1), 7.0, np.float32))
    callback.on_train_batch_end(2)  # step 3 is not an update step, but it is the last: the net takes the average
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), 0.0)


def _named_variables():
    """A conv kernel, a BatchNorm beta and the whitening bias, named as in the airbench nets."""
    with keras.name_scope("block1_bn1"):
        beta = keras.Variable(np.ones(2, np.float32), name="beta")
    with keras.name_scope("whiten"):
        whiten_bias = keras.Variable(np.ones(2, np.float32), name="bias")
    with keras.name_scope("block1_conv1"):
        kernel = keras.Variable(np.ones((1, 1, 1, 2), np.float32), name="kernel")
    return [kernel, beta, whiten_bias]


def test_airbench_sgd_follows_torch_nesterov_with_l2_bias_scale_and_whitening_freeze():
    variables = _named_variables()
    assert [variable.path for variable in variables] == ["block1_conv1/kernel", "block1_bn1/beta", "whiten/bias"]
    optimizer = optim.AirbenchSGD(0.1, momentum=0.5, l2=0.01, bias_lr_scale=4.0, whiten_bias_steps=2)
    expected = [np.asarray(keras.ops.convert_to_numpy(variable)) for variable in variables]
    buffers = [np.zeros_like(value) for value in expected]
    gradient = 0.3
    for step in range(4):
        optimizer.apply([keras.ops.full(variable.shape, gradient) for variable in variables], variables)
        for index, scale in enumerate((1.0, 4.0, 1.0 if step < 2 else 0.0)):
            l2_scale = 0.0 if index == 2 and step >= 2 else 1.0
            g = scale * gradient + 0.01 * l2_scale * expected[index]
            buffers[index] = 0.5 * buffers[index] + g
            expected[index] = expected[index] - 0.1 * (g + 0.5 * buffers[index])
    for variable, value in zip(variables, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), value, rtol=1e-6)


def test_orthogonalise_pushes_every_singular_value_towards_one():
    matrix = np.random.default_rng(0).normal(size=(16, 72)).astype(np.float32) * np.logspace(0, 2, 72)
    result = keras.ops.convert_to_numpy(optim.orthogonalise(keras.ops.convert_to_tensor(matrix)))
    singular = np.linalg.svd(result, compute_uv=False)
    assert result.shape == matrix.shape and 0.5 < singular.min() and singular.max() < 1.3
    tall = keras.ops.convert_to_numpy(optim.orthogonalise(keras.ops.convert_to_tensor(matrix.T)))
    np.testing.assert_allclose(tall, result.T, atol=1e-5)  # a tall matrix is done as its transpose


def test_muon_normalises_each_filter_bank_and_steps_along_an_orthogonal_update():
    kernel, beta, whiten_bias = _named_variables()
    kernel = keras.Variable(np.random.default_rng(1).normal(size=(3, 3, 4, 8)).astype(np.float32), name="kernel")
    optimizer = optim.AirbenchSGD(0.5, momentum=0.85, l2=0.01, bias_lr_scale=4.0, whiten_bias_steps=2,
                                  muon_learning_rate=0.2, muon_momentum=0.6, peak_learning_rate=1.0)
    before = keras.ops.convert_to_numpy(kernel)
    gradient = np.random.default_rng(2).normal(size=(3, 3, 4, 8)).astype(np.float32)
    optimizer.apply([keras.ops.convert_to_tensor(gradient), keras.ops.ones(2), keras.ops.ones(2)],
                    [kernel, beta, whiten_bias])
    normalised = before * np.sqrt(8) / np.linalg.norm(before)
    step = (normalised - keras.ops.convert_to_numpy(kernel)) / (0.2 * 0.5)  # the schedule at half its peak
    rows = step.transpose(3, 0, 1, 2).reshape(8, -1)
    singular = np.linalg.svd(rows, compute_uv=False)
    assert 0.5 < singular.min() and singular.max() < 1.3
    direction = gradient.transpose(3, 0, 1, 2).reshape(8, -1)
    assert np.sum(rows * direction) > 0  # along the gradient (1.6 x it: Nesterov on an empty buffer)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(beta), 1 - 0.5 * (4 + 0.01) * 1.85, rtol=1e-6)  # SGD
