"""Optimisation pieces of the airbench recipe that Keras does not ship.

Keras has no piecewise-linear schedule and no Lookahead/EMA that writes the average back into the model
during training, so both are here, small and tested.
"""

import keras
import tensorflow as tf


class TriangleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """peak * (start → 1 linearly over the first `peak_at` of `total_steps`, then → end linearly)."""

    def __init__(self, peak: float, total_steps: int, start: float, peak_at: float, end: float):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.start, self.peak_at, self.end = float(start), float(peak_at), float(end)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak_step = max(1.0, float(int(self.peak_at * self.total_steps)))
        rising = self.start + (1 - self.start) * step / peak_step
        falling = 1 + (self.end - 1) * (step - peak_step) / max(1.0, self.total_steps - peak_step)
        return self.peak * tf.where(step < peak_step, rising, tf.maximum(falling, self.end))

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "start": self.start,
                "peak_at": self.peak_at, "end": self.end}


class LookaheadState(keras.layers.Layer):
    """Lookahead's running average of a net's float weights, held as non-trainable weights so that a
    checkpoint of the model that owns this layer (BackupAndRestore) carries it: a resumed run goes on
    averaging where it stopped."""

    def __init__(self, net, **kwargs):
        super().__init__(trainable=False, **kwargs)
        # The net itself is not kept here: a layer attribute would make it a sub-layer, saved twice.
        self.average = [self.add_weight(shape=variable.shape, initializer="zeros", trainable=False,
                                        name=f"average_{index}") for index, variable in enumerate(averaged(net))]
        self.started = self.add_weight(shape=(), initializer="zeros", trainable=False, name="started")
        self.built = True


def averaged(net) -> list:
    """The variables Lookahead averages: every float weight of the net, BN running statistics included."""
    return [variable for variable in net.weights if "float" in str(variable.dtype)]


class Lookahead(keras.callbacks.Callback):
    """Every `every` steps from `start_epoch` on, move the average in `state` towards the net's weights
    with decay rho = (decay ** every) * (step / total_steps) ** power, and copy the average back into the
    net; after the last step the net takes the average (airbench's LookaheadState). Covers BN running
    statistics too. Between updates the net trains on freely, so mid-run evaluations see its own weights."""

    def __init__(self, net, state: LookaheadState, total_steps: int, start_epoch: int, every: int, decay: float,
                 power: float):
        super().__init__()
        self.net, self.state, self.total_steps, self.start_epoch = net, state, total_steps, start_epoch
        self.every, self.decay, self.power = every, decay, power
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.epoch >= self.start_epoch and step % self.every == 0:
            self._update(step)
        if step >= self.total_steps:
            self._write_average()

    def _update(self, step: int):
        variables = averaged(self.net)
        if not self.state.started.numpy():
            for average, variable in zip(self.state.average, variables):
                average.assign(variable.numpy())
            self.state.started.assign(1.0)
            return
        rho = self.decay ** self.every * (step / self.total_steps) ** self.power
        for average, variable in zip(self.state.average, variables):
            updated = average.numpy()
            updated += (1 - rho) * (variable.numpy() - updated)
            average.assign(updated)
            variable.assign(updated)

    def _write_average(self):
        if self.state.started.numpy():
            for average, variable in zip(self.state.average, averaged(self.net)):
                variable.assign(average.numpy())
