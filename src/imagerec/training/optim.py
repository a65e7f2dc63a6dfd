"""Optimisation pieces of the airbench recipe that Keras does not ship, in Keras ops (any backend).

Keras has no piecewise-linear schedule, no Lookahead/EMA that writes the average back into the model during
training, and no optimizer with airbench's per-variable rule, so these are here, small and tested.
"""

import keras
from keras import ops

from imagerec.models.airbench import WHITENING_LAYER


class TriangleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """peak * (start → 1 linearly over the first `peak_at` of `total_steps`, then → end linearly)."""

    def __init__(self, peak: float, total_steps: int, start: float, peak_at: float, end: float):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.start, self.peak_at, self.end = float(start), float(peak_at), float(end)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak_step = max(1.0, float(int(self.peak_at * self.total_steps)))
        rising = self.start + (1 - self.start) * step / peak_step
        falling = 1 + (self.end - 1) * (step - peak_step) / max(1.0, self.total_steps - peak_step)
        return self.peak * ops.where(step < peak_step, rising, ops.maximum(falling, self.end))

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "start": self.start,
                "peak_at": self.peak_at, "end": self.end}


class AirbenchSGD(keras.optimizers.Optimizer):
    """airbench's update: Nesterov SGD in PyTorch's form (buffer = momentum * buffer + g; step = lr * (g +
    momentum * buffer)) on g = scale * gradient + L2 * variable, where BatchNorm biases (`beta` of layers
    named *_bn*) take `bias_lr_scale` x the gradient (not x the L2), and the whitening layer's bias
    (`whiten/`) trains for the first `whiten_bias_steps` steps only.

    `muon_learning_rate` > 0 trains the convolution filters (trainable 4-D kernels) with Muon instead, as
    airbench94_muon does: Nesterov momentum `muon_momentum` on the plain gradient, each filter bank's weight
    rescaled to norm sqrt(filters), and a step of `muon_learning_rate` x (the schedule's rate / its peak
    `peak_learning_rate`) along the update orthogonalised by `orthogonalise`. Keras' own `Muon` gives 4-D
    variables an AdamW step instead, which is why it is not used here.

    Written as one optimizer because Keras' pieces do not combine into this rule: `MultiOptimizer` could give
    BN biases their own SGD, but Keras' SGD has only decoupled weight decay and its own Nesterov form, while
    airbench's hyper-parameters were tuned with L2 added to the gradient before momentum.
    """

    def __init__(self, learning_rate, momentum: float, l2: float, bias_lr_scale: float, whiten_bias_steps: int,
                 muon_learning_rate: float = 0.0, muon_momentum: float = 0.6, peak_learning_rate: float = 1.0,
                 name: str = "airbench_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.l2, self.bias_lr_scale = float(momentum), float(l2), float(bias_lr_scale)
        self.whiten_bias_steps = int(whiten_bias_steps)
        self.muon_learning_rate, self.muon_momentum = float(muon_learning_rate), float(muon_momentum)
        self.peak_learning_rate = float(peak_learning_rate)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.buffers = [self.add_variable_from_reference(variable, "momentum") for variable in variables]
        # By index: update_step may get the backend's own variable (TensorFlow's), which has no Keras path.
        self.kinds = [_kind(variable) for variable in variables]
        if self.muon_learning_rate > 0:
            self.kinds = ["filter" if len(variable.shape) == 4 else kind
                          for kind, variable in zip(self.kinds, variables)]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.kinds[index] == "filter":
            return self._muon_step(gradient, variable, self.buffers[index], learning_rate)
        gradient_scale, l2_scale = (self.bias_lr_scale, 1.0) if self.kinds[index] == "bn_bias" else (1.0, 1.0)
        if self.kinds[index] == "whiten_bias":
            gradient_scale = l2_scale = ops.cast(self.iterations < self.whiten_bias_steps, variable.dtype)
        gradient = ops.add(ops.multiply(gradient, gradient_scale), ops.multiply(variable, self.l2 * l2_scale))
        buffer = self.buffers[index]
        self.assign(buffer, ops.add(ops.multiply(buffer, self.momentum), gradient))
        self.assign_sub(variable, ops.multiply(ops.add(gradient, ops.multiply(buffer, self.momentum)), learning_rate))

    def _muon_step(self, gradient, variable, buffer, learning_rate):
        self.assign(buffer, ops.add(ops.multiply(buffer, self.muon_momentum), gradient))
        update = ops.add(gradient, ops.multiply(buffer, self.muon_momentum))
        height, width, channels_in, filters = variable.shape
        # Keras' (h, w, in, out) → one row per filter, as PyTorch's (out, in, h, w) reshaped to 2-D
        rows = ops.reshape(ops.transpose(update, (3, 0, 1, 2)), (filters, height * width * channels_in))
        step = ops.transpose(ops.reshape(orthogonalise(rows), (filters, height, width, channels_in)), (1, 2, 3, 0))
        normalised = ops.multiply(variable, filters ** 0.5 / (ops.sqrt(ops.sum(ops.square(variable))) + 1e-12))
        rate = self.muon_learning_rate / self.peak_learning_rate * learning_rate
        self.assign(variable, ops.subtract(normalised, ops.multiply(step, rate)))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "l2": self.l2,
                "bias_lr_scale": self.bias_lr_scale, "whiten_bias_steps": self.whiten_bias_steps,
                "muon_learning_rate": self.muon_learning_rate, "muon_momentum": self.muon_momentum,
                "peak_learning_rate": self.peak_learning_rate}


def orthogonalise(matrix, steps: int = 3):
    """Muon's quintic Newton-Schulz iteration (Keller Jordan): `matrix` (m, n) → about U V^T of its SVD, with
    singular values pushed towards 1 (roughly 0.7-1.2 after 3 steps: the coefficients trade accuracy for
    speed, which training tolerates)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    rows, columns = matrix.shape
    x = ops.divide(matrix, ops.sqrt(ops.sum(ops.square(matrix))) + 1e-7)
    if rows > columns:
        x = ops.transpose(x)
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        polynomial = ops.add(ops.multiply(gram, b), ops.multiply(ops.matmul(gram, gram), c))
        x = ops.add(ops.multiply(x, a), ops.matmul(polynomial, x))
    return ops.transpose(x) if rows > columns else x


def _kind(variable) -> str:
    if variable.path.startswith(WHITENING_LAYER + "/"):
        return "whiten_bias"  # the only trainable variable of the whitening layer
    if "_bn" in variable.path and variable.name == "beta":
        return "bn_bias"
    return "other"


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
    statistics too. Between updates the net trains on freely, so mid-run evaluations see its own weights.

    Steps are counted from the epoch and the batch index Keras passes (not read from the optimizer, whose
    variables JAX's `fit` holds off the model between syncs); the averaging is Keras ops on the variables.
    """

    def __init__(self, net, state: LookaheadState, total_steps: int, steps_per_epoch: int, start_epoch: int,
                 every: int, decay: float, power: float):
        super().__init__()
        self.net, self.state, self.total_steps, self.steps_per_epoch = net, state, total_steps, steps_per_epoch
        self.start_epoch, self.every, self.decay, self.power = start_epoch, every, decay, power
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch + 1
        update = self.epoch >= self.start_epoch and step % self.every == 0
        if update or step >= self.total_steps:
            _sync_jax_state(self.model)
        if update:
            self._update(step)
        if step >= self.total_steps:
            self._write_average()

    def _update(self, step: int):
        variables = averaged(self.net)
        if not float(ops.convert_to_numpy(self.state.started)):
            for average, variable in zip(self.state.average, variables):
                average.assign(ops.copy(variable.value))  # own buffers: JAX donates each variable's
            self.state.started.assign(1.0)
            return
        keep = self.decay ** self.every * (step / self.total_steps) ** self.power
        for average, variable in zip(self.state.average, variables):
            updated = average.value + (1 - keep) * (variable.value - average.value)
            average.assign(updated)
            variable.assign(ops.copy(updated))

    def _write_average(self):
        if float(ops.convert_to_numpy(self.state.started)):
            for average, variable in zip(self.state.average, averaged(self.net)):
                variable.assign(ops.copy(average.value))


def _sync_jax_state(model) -> None:
    """Under JAX, `fit` keeps the training state off the model's variables between syncs; bring it back before
    reading or writing them here (the next step then starts from what this callback wrote)."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
