"""The runtime predictor: a trained or loaded model of any format, raw uint8 images in, probabilities out.

`train` returns one, `saving.load_model` returns one, and evaluation, reports, exports, prediction and the
server all take one, whatever format it came from.
"""

import dataclasses

import numpy as np

from imagerec.errors import UserError

# `predict_proba_selective`: images whose top probability from the plain view is below this get the test-time
# views too. On the default net's 10,000 test images (CIFAR-10 (JPEG copy)) 0.95 sent a third of them to the
# views and kept the accuracy of views for all (89.68% both; 0.9: 89.67%, a quarter), for 2.66 forward passes
# per image instead of 6 (BENCHMARKS.md, *Selective test-time views*).
SELECTIVE_CONFIDENCE = 0.95


@dataclasses.dataclass
class Classifier:
    """A model of any format: raw 0-255 images (N, H, W, C) in, class probabilities (N, K) out."""

    path: str
    format: str  # "keras", "h5", "weights" or "savedmodel"
    class_names: tuple
    input_shape: tuple  # (height, width, channels)
    _predict_batch: object  # float32 (N, H, W, C) → probabilities (N, num_classes)
    keras_model: object = None  # the keras.Model, for formats that have one
    _predict_single_view: object = None  # its twin without test-time views: built on first use, False for none

    @classmethod
    def from_keras(cls, model, class_names, path: str = "", format_name: str = "keras") -> "Classifier":
        """Wrap an in-memory Keras model (raw pixels in, probabilities out)."""
        return cls(str(path), format_name, tuple(class_names), tuple(model.input_shape[1:]),
                   _compiled_forward(model), keras_model=model)

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities (N, num_classes) float32 for uint8/float images (N, H, W, C) in 0-255: what the model
        file computes (with all its test-time views, where it has them), as every format and the server do."""
        return self._batched(self._predict_batch, self._checked(images), batch_size)

    def predict_proba_selective(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """`predict_proba` with the test-time views only where the plain view is unsure (top probability under
        SELECTIVE_CONFIDENCE); the others keep their single view's probabilities. Evaluation's way: the same
        accuracy for well under half the passes. A model without views (any format but Keras') is `predict_proba`."""
        images = self._checked(images)
        single_view = self._single_view()
        if single_view is None:
            return self._batched(self._predict_batch, images, batch_size)
        probabilities = self._batched(single_view, images, batch_size)
        unsure = np.flatnonzero(probabilities.max(axis=1) < SELECTIVE_CONFIDENCE)
        if len(unsure):
            probabilities[unsure] = self._batched(self._predict_batch, images[unsure], batch_size)
        return probabilities

    def _single_view(self):
        """The compiled single-view twin of a Keras model with test-time views (built on first use, so loading and
        serving pay nothing for it), or None."""
        if self._predict_single_view is None and self.keras_model is not None:
            from imagerec.models import inference

            single = inference.single_view_model(self.keras_model)
            self._predict_single_view = False if single is None else _compiled_forward(single)
        return self._predict_single_view or None

    def _checked(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.input_shape):
            raise UserError(f"images of shape {images.shape[1:]} do not fit the model's input {self.input_shape}")
        return images

    def _batched(self, predict, images: np.ndarray, batch_size: int) -> np.ndarray:
        outputs = [np.asarray(predict(images[start:start + batch_size].astype(np.float32)))
                   for start in range(0, len(images), batch_size)]
        if not outputs:
            return np.zeros((0, len(self.class_names)), np.float32)
        return np.concatenate(outputs).astype(np.float32)


def _compiled_forward(model):
    """model(images, training=False) as one traced graph: calling a Keras model eagerly runs it layer by layer
    from Python, ~6x slower for a single image here (22 ms vs 3.8 ms for fast_small with test-time views).
    On another backend, Keras' own compiled predict step (jitted under JAX)."""
    from imagerec import backends

    if not backends.is_tensorflow():
        return model.predict_on_batch
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    return tf.function(lambda images: model(images, training=False), input_signature=[spec], autograph=False)
