"""imagerec: train, evaluate, save and predict with image classifiers in TensorFlow/Keras.

The Python API the CLI is built on:

    import imagerec
    data = imagerec.load_dataset("cifar10-jpeg.tar.gz")          # uint8 arrays + class names
    recipe = imagerec.get_recipe("seed", plain_epochs=2)          # a frozen preset
    run = imagerec.train(data, recipe, "runs/try")               # trains, evaluates, saves all formats
    model = imagerec.load_model("runs/try/model.keras")          # any saved format
    imagerec.evaluate(model, data.x_test, data.y_test)           # {"accuracy": ..., "loss": ...}
    imagerec.predict_files(model, ["photo.jpg"])                 # top-k labels per file
    imagerec.export_model(model, "m.onnx", "onnx", data.x_test[:256])  # written, run by onnxruntime, checked
    imagerec.run_server(model)                                   # web page + TF Serving REST API on :8500
"""

__version__ = "0.1.0"

# Attributes load on first use, so `import imagerec` (and `imagerec --help`) does not pay for TensorFlow.
_EXPORTS = {
    "Dataset": "imagerec.data", "decode_image": "imagerec.data", "load_dataset": "imagerec.data",
    "UserError": "imagerec.errors", "evaluate": "imagerec.evaluate", "predict_files": "imagerec.evaluate",
    "build_model": "imagerec.models", "get_recipe": "imagerec.recipes", "Classifier": "imagerec.saving",
    "load_model": "imagerec.saving", "train": "imagerec.train", "export_model": "imagerec.export",
    "create_app": "imagerec.serve", "run_server": "imagerec.serve", "ServeLimits": "imagerec.serve",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'imagerec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
