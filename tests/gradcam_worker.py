"""Grad-CAM heatmaps of a saved .keras model on the Keras backend in KERAS_BACKEND, for
tests/test_models_gradcam.py; not a test.

    KERAS_BACKEND=jax python gradcam_worker.py MODEL.keras IMAGES.npy OUT.npy
"""

import sys

import keras
import numpy as np

from imagerec.models import gradcam

if __name__ == "__main__":
    model_path, images_path, out_path = sys.argv[1:4]
    model = keras.saving.load_model(model_path)
    explainer = gradcam.GradCam(model)
    np.save(out_path, explainer(np.load(images_path)))
    print(keras.backend.backend(), explainer.layer_name)
