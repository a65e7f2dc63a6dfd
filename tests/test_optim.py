import keras
import numpy as np
import pytest

from imagerec import optim


def test_triangle_schedule_rises_then_falls():
    schedule = optim.TriangleSchedule(peak=2.0, total_steps=100, start=0.2, peak_at=0.23, end=0.07)
    values = [float(schedule(step)) for step in range(101)]
    assert values[0] == pytest.approx(0.4)
    assert max(values) == pytest.approx(2.0) and int(np.argmax(values)) == 23
    assert values[100] == pytest.approx(0.14)
    assert all(a <= b for a, b in zip(values[:23], values[1:24]))
    assert all(a >= b for a, b in zip(values[23:], values[24:]))


def _lookahead_with_fake_optimizer(total_steps):
    inputs = keras.Input((2,))
    net = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))

    class FakeOptimizer:
        iterations = keras.Variable(0, dtype="int64")

    class Holder:
        optimizer = FakeOptimizer()

    callback = optim.Lookahead(net, optim.LookaheadState(net), total_steps=total_steps, start_epoch=0, every=1,
                               decay=0.5, power=0.0)
    callback.set_model(Holder())
    return callback, net.layers[-1].kernel, FakeOptimizer.iterations


def test_lookahead_averages_weights_and_writes_them_back():
    callback, kernel, iterations = _lookahead_with_fake_optimizer(total_steps=3)
    kernel.assign(np.zeros((2, 1), np.float32))
    callback.on_epoch_begin(0)
    iterations.assign(1)
    callback.on_train_batch_end(0)  # first call: remembers the weights
    kernel.assign(np.ones((2, 1), np.float32))
    iterations.assign(2)
    callback.on_train_batch_end(1)  # rho = 0.5: average = 0.5 * 0 + 0.5 * 1
    np.testing.assert_allclose(kernel.numpy(), 0.5)
    kernel.assign(np.full((2, 1), 3.0, np.float32))
    callback.on_epoch_end(0)  # mid-run epoch ends leave the net's own weights alone
    np.testing.assert_allclose(kernel.numpy(), 3.0)
    iterations.assign(3)
    callback.on_train_batch_end(2)  # the last step: one more update (0.5 * 0.5 + 0.5 * 3), then the average
    np.testing.assert_allclose(kernel.numpy(), 1.75)


def test_lookahead_final_step_writes_the_average_even_between_updates():
    callback, kernel, iterations = _lookahead_with_fake_optimizer(total_steps=3)
    callback.every = 2
    kernel.assign(np.zeros((2, 1), np.float32))
    iterations.assign(2)
    callback.on_train_batch_end(1)  # first update: remembers 0
    kernel.assign(np.full((2, 1), 7.0, np.float32))
    iterations.assign(3)
    callback.on_train_batch_end(2)  # step 3 is not an update step, but it is the last: the net takes the average
    np.testing.assert_allclose(kernel.numpy(), 0.0)
