"""The runtime predictor: a trained or loaded model of any format, raw uint8 images in, probabilities out.

`train` returns one, `saving.load_model` returns one, and evaluation, reports, exports, prediction and the
server all take one, whatever format it came from.
"""

import dataclasses

import numpy as np

from imagerec.errors import UserError


@dataclasses.dataclass
class Classifier:
    """A model of any format: raw 0-255 images (N, H, W, C) in, class probabilities (N, K) out."""

    path: str
    format: str  # "keras", "h5", "weights" or "savedmodel"
    class_names: tuple
    input_shape: tuple  # (height, width, channels)
    _predict_batch: object  # float32 (N, H, W, C) → probabilities (N, num_classes)
    keras_model: object = None  # the keras.Model, for formats that have one

    @classmethod
    def from_keras(cls, model, class_names, path: str = "", format_name: str = "keras") -> "Classifier":
        """Wrap an in-memory Keras model (raw pixels in, probabilities out)."""
        return cls(str(path), format_name, tuple(class_names), tuple(model.input_shape[1:]),
                   _compiled_forward(model), keras_model=model)

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities (N, num_classes) float32 for uint8/float images (N, H, W, C) in 0-255."""
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.input_shape):
            raise UserError(f"images of shape {images.shape[1:]} do not fit the model's input {self.input_shape}")
        outputs = [np.asarray(self._predict_batch(images[start:start + batch_size].astype(np.float32)))
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
