"""Custom Keras layers of the airbench models, registered so every saved format reloads them safely, and the
BatchNormalization every net here uses (synchronised across replicas).

Keras has no layer for a frozen-kernel/trainable-bias convolution or for test-time-augmentation views,
so these few are written here; each is plain TensorFlow ops that export to SavedModel, TFLite and ONNX.
"""

import contextlib

import keras
import numpy as np
from keras import ops

from imagerec import backends

PACKAGE = "imagerec"


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchWhitening(keras.layers.Layer):
    """A 'valid' convolution of raw pixels whose kernel and offset are set once from the data (see
    `whitening_parameters`) and never trained, plus a bias that trains (airbench: for the first epochs
    only; the recipe decides). The offset and the kernel's scale fold in the per-channel input
    normalisation, so no separate Normalization layer is needed (whose cached statistics the legacy
    HDF5 loader does not restore)."""

    def __init__(self, filters: int, patch_size: int = 2, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.patch_size, self.stride = filters, patch_size, stride  # stride > 1: a patchifying stem

    def build(self, input_shape):
        shape = (self.patch_size, self.patch_size, input_shape[-1], self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="glorot_uniform", trainable=False)
        self.offset = self.add_weight(name="offset", shape=(self.filters,), initializer="zeros", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        return ops.conv(inputs, self.kernel, strides=self.stride, padding="valid") + self.offset + self.bias

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "patch_size": self.patch_size, "stride": self.stride}


def whitening_parameters(images: np.ndarray, patch_size: int = 2, epsilon: float = 5e-4, stride: int = 1):
    """(kernel, offset) of a PatchWhitening layer for raw 0-255 images (N, H, W, C).

    The images are normalised per channel (mean 0, std 1); each eigenvector e of the covariance of their
    patches, with eigenvalue v, gives the filters e/sqrt(v + epsilon) and -e/sqrt(v + epsilon)
    (airbench, arXiv 2404.00498). The normalisation is then folded into the kernel and the offset.
    """
    pixels = np.asarray(images, np.float64)
    mean, std = pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2)) + 1e-8
    kernel = _whitening_kernel((pixels - mean) / std, patch_size, epsilon, stride)
    raw_kernel = kernel / std[np.newaxis, np.newaxis, :, np.newaxis]
    offset = -np.einsum("hwco,c->o", raw_kernel, mean)
    return raw_kernel.astype(np.float32), offset.astype(np.float32)


def _whitening_kernel(images: np.ndarray, patch_size: int, epsilon: float, stride: int = 1) -> np.ndarray:
    """Kernel (patch, patch, channels, 2*patch*patch*channels) whitening the patches (every `stride`-th) of
    normalised images."""
    count, height, width, channels = images.shape
    patches = np.lib.stride_tricks.sliding_window_view(images, (patch_size, patch_size), axis=(1, 2))
    patches = patches[:, ::stride, ::stride]
    # (N, H', W', C, ph, pw) → rows of (ph, pw, C), the layout of a Keras conv kernel
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, patch_size * patch_size * channels)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]  # largest first
    filters = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0) + epsilon)
    kernel = np.concatenate([filters, -filters], axis=1)
    return kernel.reshape(patch_size, patch_size, channels, -1).astype(np.float32)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TestTimeViews(keras.layers.Layer):
    """(N, H, W, C) → (6N, H, W, C): the image, its mirror, and 1-pixel diagonal shifts of both
    (reflect padding), stacked view-major. Pair with `TestTimeAverage`."""

    VIEW_WEIGHTS = (0.25, 0.25, 0.125, 0.125, 0.125, 0.125)  # airbench tta_level 2

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        padded = ops.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        up_left = padded[:, :height, :width, :]
        down_right = padded[:, 2:height + 2, 2:width + 2, :]
        views = [inputs, ops.flip(inputs, axis=2), up_left, ops.flip(up_left, axis=2),
                 down_right, ops.flip(down_right, axis=2)]
        return ops.concatenate(views, axis=0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TestTimeAverage(keras.layers.Layer):
    """(6N, K) logits from `TestTimeViews` order → (N, K) weighted mean logits."""

    def call(self, inputs):
        views = ops.reshape(inputs, (len(TestTimeViews.VIEW_WEIGHTS), -1, inputs.shape[-1]))
        weights = ops.reshape(ops.convert_to_tensor(TestTimeViews.VIEW_WEIGHTS, dtype=inputs.dtype), (-1, 1, 1))
        return ops.sum(views * weights, axis=0)

    def compute_output_shape(self, input_shape):
        # Given, not traced: JAX cannot trace the reshape of an unknown batch into (views, -1, K) symbolically.
        batch = input_shape[0] // len(TestTimeViews.VIEW_WEIGHTS) if input_shape[0] is not None else None
        return (batch, input_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class Temperature(keras.layers.Layer):
    """Logits divided by a fitted temperature T (Guo et al., ICML 2017), before the softmax: T > 1 softens
    over-confident probabilities, T < 1 sharpens under-confident ones, and the most probable class never changes.
    `from_probabilities`: the input is a net's softmax output, taken back to log-probabilities first (they differ
    from its logits by a per-image constant, which the softmax ignores). T is configuration, not a weight: it
    travels in every format's graph as a constant."""

    FLOOR = 1e-30  # log(0) would be -inf; 1e-30 is far below any probability shown

    def __init__(self, temperature: float = 1.0, from_probabilities: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
        self.temperature, self.from_probabilities = float(temperature), bool(from_probabilities)

    def call(self, inputs):
        scores = ops.log(ops.maximum(inputs, self.FLOOR)) if self.from_probabilities else inputs
        return scores / self.temperature

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature,
                "from_probabilities": self.from_probabilities}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization, the same weights and numbers, whose training step on TensorFlow is one fused
    kernel (FusedBatchNormV3, oneDNN's on CPUs: statistics and normalisation in two passes over the activations,
    and a fused gradient) instead of Keras' moments and normalisation in separate elementwise ops. The airbench
    net's forward and backward run 10-17% faster with it on 2 CPU cores in bf16 (benchmarks/profile_step.py).
    Everything else (inference, other backends, synchronised replicas, masks, renorm, another axis) is Keras' own;
    so is every saved format's graph, which runs in inference mode."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones((channels,), "float32")
        offset = self.beta if self.center else tf.zeros((channels,), "float32")
        empty = tf.constant([], "float32")
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=tf.convert_to_tensor(scale), offset=tf.convert_to_tensor(offset), mean=empty,
            variance=empty, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # The kernel returns the unbiased variance for the running average; Keras averages the biased one.
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1) / tf.maximum(count, 2.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask) -> bool:
        return (backends.is_tensorflow() and not self.synchronized and not self.renorm and mask is None
                and len(inputs.shape) == 4 and self.axis in (-1, 3) and inputs.dtype in ("float32", "bfloat16"))


_FUSED_BATCH_NORM = [False]  # set by `fused_batch_norm()` while a net for training is built


@contextlib.contextmanager
def fused_batch_norm():
    """Nets built inside this block get `FusedBatchNormalization` on one TensorFlow device. Training builds its
    net here and saves a copy built outside (`precision.float32_copy`), so every saved file names Keras' own
    BatchNormalization and loads wherever Keras does (the seed recipe's HDF5 included)."""
    previous, _FUSED_BATCH_NORM[0] = _FUSED_BATCH_NORM[0], True
    try:
        yield
    finally:
        _FUSED_BATCH_NORM[0] = previous


def replica_synced_batch_norm(**kwargs) -> keras.layers.BatchNormalization:
    """BatchNormalization that, when built under a tf.distribute strategy with several replicas, computes
    its statistics over the global batch. Unsynchronised, each replica would update the running statistics
    from its own slice and the workers' copies would drift apart (seen with MultiWorkerMirroredStrategy);
    synchronised, N replicas compute what one device computes on the whole batch. One device, inside
    `fused_batch_norm()`: the fused kernel (`FusedBatchNormalization`)."""
    if not backends.is_tensorflow():  # no tf.distribute: one device
        return keras.layers.BatchNormalization(**kwargs)
    import tensorflow as tf

    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return keras.layers.BatchNormalization(synchronized=True, **kwargs)
    if _FUSED_BATCH_NORM[0]:
        return FusedBatchNormalization(**kwargs)
    return keras.layers.BatchNormalization(**kwargs)
