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


def test_lookahead_averages_weights_and_writes_them_back():
    inputs = keras.Input((2,))
    net = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))

    class FakeOptimizer:
        iterations = keras.Variable(0, dtype="int64")

    class Holder:
        optimizer = FakeOptimizer()

    callback = optim.Lookahead(net, total_steps=10, start_epoch=0, every=1, decay=0.5, power=0.0)
    callback.set_model(Holder())
    kernel = net.layers[-1].kernel
    kernel.assign(np.zeros((2, 1), np.float32))
    callback.on_epoch_begin(0)
    FakeOptimizer.iterations.assign(1)
    callback.on_train_batch_end(0)  # first call: remembers the weights
    kernel.assign(np.ones((2, 1), np.float32))
    FakeOptimizer.iterations.assign(2)
    callback.on_train_batch_end(1)  # rho = 0.5: average = 0.5 * 0 + 0.5 * 1
    np.testing.assert_allclose(kernel.numpy(), 0.5)
    kernel.assign(np.full((2, 1), 3.0, np.float32))
    callback.on_epoch_end(0)  # the net takes the average at the end of each epoch
    np.testing.assert_allclose(kernel.numpy(), 0.5)
