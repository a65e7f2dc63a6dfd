"""Grad-CAM (Selvaraju et al., ICCV 2017), as keras-io's `grad_cam.py` computes it: the gradient of a class's
score with respect to the last convolutional feature map, each channel weighted by its gradient's spatial mean,
summed, rectified, and scaled to [0, 1]. Keras has no Grad-CAM (keras-team/keras#15704) and keras-io's example
is TensorFlow-only, so it is written here for every family (seed, airbench, the backbones) and for the
TensorFlow and JAX backends.

The net is taken from inside the saved model (behind test-time views, a temperature and a softmax) and cut at
its last top-level layer with a spatial output (a backbone is one such layer): features = the part before the
cut, score = the part after it. The class score is a logit: for nets that end in a softmax Dense layer, that
layer's pre-activation, computed from its kernel (Grad-CAM's y^c is taken before the softmax).
"""

import keras
import numpy as np
from keras import ops

from imagerec import backends
from imagerec.errors import UserError
from imagerec.models import inference


class GradCam:
    """Heatmaps of one Keras inference model (raw pixels → probabilities); build once, call on many images."""

    def __init__(self, model: keras.Model):
        self.model = model
        net = inference.net_of(model)
        layer = feature_layer(net)
        self.layer_name = layer.name
        self.features = keras.Model(net.inputs[0], layer.output)  # a tensor, not a list: called with one
        last = net.layers[-1]
        self.softmax_dense = isinstance(last, keras.layers.Dense) and _activation_name(last) == "softmax"
        head_output = last.input if self.softmax_dense else net.output
        # Keras 3 builds a model between any two tensors of one graph: here the layers after the cut
        self.head = keras.Model(layer.output, head_output)
        self.dense = last if self.softmax_dense else None

    def scores(self, features):
        """Class logits (N, K) from the feature map."""
        outputs = self.head(features, training=False)
        if self.dense is None:
            return ops.cast(outputs, "float32")
        kernel = ops.cast(self.dense.kernel, "float32")
        logits = ops.matmul(ops.cast(outputs, "float32"), kernel)
        return logits + ops.cast(self.dense.bias, "float32") if self.dense.use_bias else logits

    def __call__(self, images: np.ndarray, classes=None) -> np.ndarray:
        """Heatmaps (N, H, W) float32 in [0, 1] at the images' size, for `classes` (N,) (default: the class the
        whole model predicts); an image whose rectified map is zero everywhere gets zeros."""
        images = np.asarray(images, np.float32)
        if classes is None:
            classes = np.asarray(self.model.predict_on_batch(images)).argmax(axis=1)
        classes = np.asarray(classes, np.int64)
        features = self.features(images, training=False)
        gradients = _gradient(self.scores, features, classes)
        features = np.asarray(ops.convert_to_numpy(ops.cast(features, "float32")))
        weights = gradients.mean(axis=(1, 2), keepdims=True)  # one weight per channel: its gradient's mean
        maps = np.maximum((weights * features).sum(axis=-1), 0)
        peak = maps.max(axis=(1, 2), keepdims=True)
        maps = np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0)
        return resize_maps(maps, images.shape[1:3])


def feature_layer(net: keras.Model):
    """The net's last top-level layer whose output is a spatial map (N, h, w, C): the last convolutional block's
    output (airbench, seed), or the backbone itself."""
    for layer in reversed(net.layers):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4 and not isinstance(layer, keras.layers.InputLayer):
            return layer
    raise UserError(f"{net.name} has no spatial feature map to explain")


def _gradient(scores, features, classes) -> np.ndarray:
    """d score[n, classes[n]] / d features, as float32 NumPy, on the TensorFlow or the JAX backend."""
    backend = backends.current()
    if backend == "tensorflow":
        import tensorflow as tf

        features = tf.convert_to_tensor(features)
        with tf.GradientTape() as tape:
            tape.watch(features)
            picked = tf.gather(scores(features), classes, axis=1, batch_dims=1)
        return tape.gradient(picked, features).numpy().astype(np.float32)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(values):  # the images are independent: the gradient of the sum is each image's own
            return jnp.take_along_axis(scores(values), jnp.asarray(classes)[:, None], axis=1).sum()
        return np.asarray(jax.grad(total)(jnp.asarray(features)), np.float32)
    raise UserError(f"Grad-CAM runs on the TensorFlow and JAX backends, not {backend}")


def resize_maps(maps: np.ndarray, size) -> np.ndarray:
    """(N, h, w) maps bilinearly resized to (N, H, W) (half-pixel centres, as image resizers do)."""
    from scipy import ndimage

    height, width = size
    rows = (np.arange(height) + 0.5) * maps.shape[1] / height - 0.5
    columns = (np.arange(width) + 0.5) * maps.shape[2] / width - 0.5
    grid_rows, grid_columns = np.meshgrid(rows, columns, indexing="ij")
    return np.stack([ndimage.map_coordinates(item, [grid_rows, grid_columns], order=1, mode="nearest")
                     for item in maps]).astype(np.float32)


def _activation_name(layer) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")
