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


MIN_MAP_SIDE = 7  # the cut's map is at least this many cells a side where the net has one: see `feature_cut`


class GradCam:
    """Heatmaps of one Keras inference model (raw pixels → probabilities); build once, call on many images."""

    def __init__(self, model: keras.Model):
        self.model = model
        net = inference.net_of(model)
        last = net.layers[-1]
        self.dense = last if isinstance(last, keras.layers.Dense) and _activation_name(last) == "softmax" else None
        # For a net ending in a softmax Dense layer the head stops at that layer's input; its logits come below.
        target = _input_in(net, last) if self.dense is not None else net.outputs[0]
        self.layer_name, self.features, self.head = feature_cut(net, target)
        self._traced = None

    def _features_and_gradients(self, images, classes) -> tuple:
        """(feature maps, d score / d maps) as float32 NumPy. On TensorFlow one traced graph (eager, a single
        image took 4-6x its prediction's time here); on JAX, jax.grad of the head."""
        if backends.current() == "tensorflow":
            if self._traced is None:
                self._traced = _traced_gradients(self, images.shape[1:])
            features, gradients = self._traced(images, classes)
            return features.numpy().astype(np.float32), gradients.numpy().astype(np.float32)
        features = self.features(images)
        gradients = _gradient(self.scores, features, classes)
        return np.asarray(ops.convert_to_numpy(ops.cast(features, "float32"))), gradients

    def scores(self, features):
        """Class logits (N, K) from the feature map."""
        outputs = ops.cast(self.head(features), "float32")
        if self.dense is None:
            return outputs
        logits = ops.matmul(outputs, ops.cast(self.dense.kernel, "float32"))
        return logits + ops.cast(self.dense.bias, "float32") if self.dense.use_bias else logits

    def __call__(self, images: np.ndarray, classes=None) -> np.ndarray:
        """Heatmaps (N, H, W) float32 in [0, 1] at the images' size, for `classes` (N,) (default: the class the
        whole model predicts); an image whose rectified map is zero everywhere gets zeros."""
        images = np.asarray(images, np.float32)
        if classes is None:
            classes = np.asarray(self.model.predict_on_batch(images)).argmax(axis=1)
        features, gradients = self._features_and_gradients(images, np.asarray(classes, np.int64))
        weights = gradients.mean(axis=(1, 2), keepdims=True)  # one weight per channel: its gradient's mean
        maps = resize_maps(np.maximum((weights * features).sum(axis=-1), 0), images.shape[1:3])
        peak = maps.max(axis=(1, 2), keepdims=True)  # scaled after resizing: each map's maximum is exactly 1
        return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype(np.float32)


def feature_cut(net: keras.Model, target) -> tuple:
    """(layer name, features(images), head(features) → `target`, a tensor of the net): the net cut after its last
    layer with a spatial map of at least MIN_MAP_SIDE cells a side (else after its last spatial layer), looking
    inside a nested backbone too.

    Grad-CAM's own choice, the last convolutional map, is 3x3 in an airbench net at 32 px and 1x1 in a backbone
    at 32 px: too coarse to say where in the image (on tests/test_models_gradcam.py's shape task, airbench_small's
    3x3 map put its maximum on the shape for 54% of images, a centred blob for 51%; its 7x7 map for 95%). A cut
    is only where no connection skips over it (not inside a residual block)."""
    found = []  # (side, name, features, head), latest first
    for layer in reversed(net.layers):
        if isinstance(layer, keras.layers.InputLayer) or not _is_spatial(layer):
            continue
        if isinstance(layer, keras.Model):
            found += _cuts_inside(net, layer, target)
        else:
            cut = _cut(net.inputs[0], _output_in(net, layer), target)
            if cut is not None:
                found.append((_side(layer), layer.name, *cut))
        if any(item[0] >= MIN_MAP_SIDE for item in found):
            break
    if not found:
        raise UserError(f"{net.name} has no spatial feature map to explain")
    wide = [item for item in found if item[0] >= MIN_MAP_SIDE]
    _, name, features, head = wide[0] if wide else found[0]
    return name, features, head


def _cuts_inside(net: keras.Model, nested: keras.Model, target) -> list:
    """Cuts inside a nested model (a backbone), latest first, down to the first with a wide enough map:
    features = the outer layers before it, then its layers up to the cut; head = its layers after the cut, then
    the outer layers after it up to `target`."""
    before = keras.Model(net.inputs[0], _input_in(net, nested))
    after = keras.Model(_output_in(net, nested), target)
    cuts = []
    for layer in reversed(nested.layers):
        if isinstance(layer, keras.layers.InputLayer) or not _is_spatial(layer):
            continue
        cut = _cut(nested.inputs[0], layer.output, nested.outputs[0])
        if cut is not None:
            inner_features, inner_head = cut
            cuts.append((_side(layer), f"{nested.name}/{layer.name}",
                         lambda images, f=inner_features: f(before(images, training=False)),
                         lambda features, h=inner_head: after(h(features), training=False)))
            if cuts[-1][0] >= MIN_MAP_SIDE:
                break
    return cuts


def _cut(inputs, middle, outputs):
    """(features, head): inputs → middle → outputs as two Keras models, or None where a connection skips over
    `middle`."""
    try:
        features, head = keras.Model(inputs, middle), keras.Model(middle, outputs)
    except ValueError:
        return None
    return (lambda images: features(images, training=False)), (lambda values: head(values, training=False))


def _is_spatial(layer) -> bool:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # a layer never called
        return False
    return len(shape) == 4


def _side(layer) -> int:
    _, height, width, _ = layer.output.shape
    return min(height or 0, width or 0)


def _output_in(net: keras.Model, layer):
    """The layer's output tensor in `net`'s graph. A nested model's `.output` is its own graph's output, not that
    of its call inside `net`: its nodes are tried, the latest first."""
    return _node_tensor(net, layer, "output_tensors")


def _input_in(net: keras.Model, layer):
    return _node_tensor(net, layer, "input_tensors")


def _node_tensor(net: keras.Model, layer, attribute: str):
    for node in reversed(layer._inbound_nodes):
        tensor = getattr(node, attribute)[0]
        try:
            keras.Model(net.inputs[0], tensor)
        except ValueError:  # a node of another graph
            continue
        return tensor
    raise UserError(f"cannot find {layer.name} inside {net.name}")


def _traced_gradients(explainer, image_shape):
    """A tf.function (any batch size) of (features, gradients) for images and classes."""
    import tensorflow as tf

    def compute(images, classes):
        features = explainer.features(images)
        with tf.GradientTape() as tape:
            tape.watch(features)
            picked = tf.gather(explainer.scores(features), classes, axis=1, batch_dims=1)
        return features, tape.gradient(picked, features)
    return tf.function(compute, input_signature=[tf.TensorSpec([None, *image_shape], tf.float32),
                                                 tf.TensorSpec([None], tf.int64)], autograph=False)


def _gradient(scores, features, classes) -> np.ndarray:
    """d score[n, classes[n]] / d features as float32 NumPy, on the JAX backend (TensorFlow: `_traced_gradients`)."""
    if backends.current() != "jax":
        raise UserError(f"Grad-CAM runs on the TensorFlow and JAX backends, not {backends.current()}")
    import jax
    import jax.numpy as jnp

    def total(values):  # the images are independent: the gradient of the sum is each image's own
        return jnp.take_along_axis(scores(values), jnp.asarray(classes)[:, None], axis=1).sum()
    return np.asarray(jax.grad(total)(jnp.asarray(features)), np.float32)


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
