"""imagerec: train, evaluate, save, export and serve image classifiers in TensorFlow/Keras.

The Python API the CLI is built on, one call per command:

    import imagerec
    run = imagerec.train("cifar10-jpeg.tar.gz", "airbench_small", "runs/try")  # train, score, save, report
    imagerec.report_run("runs/try")                              # the report again (e.g. on other data)
    imagerec.evaluate_model("runs/try/model.keras")              # {"accuracy": ..., "loss": ...}
    imagerec.export_run("runs/try", "onnx", "exports/m.onnx")    # written, run by onnxruntime, checked
    imagerec.predict_paths("runs/try", ["photo.jpg"])            # top-k labels per file
    imagerec.serve_model("runs/try")                             # web page + TF Serving REST API on :8500
    imagerec.doctor("cifar10-jpeg.tar.gz", "runs/checkup")       # label errors, copies, leaks, odd images

and the pieces they are made of: `load_dataset`, `get_recipe`, `load_model` (a `Classifier`), `evaluate`,
`predict_files`, `export_model`, `create_app`.
"""

__version__ = "0.1.0"

# Attributes load on first use, so `import imagerec` (and `imagerec --help`) does not pay for TensorFlow.
_EXPORTS = {
    "Dataset": "imagerec.data.dataset", "decode_image": "imagerec.data.images", "load_dataset": "imagerec.data.load",
    "UserError": "imagerec.errors", "evaluate": "imagerec.evaluation.evaluate",
    "predict_files": "imagerec.evaluation.predict", "build_model": "imagerec.models.registry",
    "get_recipe": "imagerec.training.recipes", "Classifier": "imagerec.artefacts.classifier",
    "load_model": "imagerec.artefacts.loading", "train": "imagerec.training.run",
    "export_model": "imagerec.export.checked", "create_app": "imagerec.serve.app",
    "run_server": "imagerec.serve.server", "ServeLimits": "imagerec.serve.limits",
    "evaluate_model": "imagerec.workflows", "report_run": "imagerec.workflows", "export_run": "imagerec.workflows",
    "predict_paths": "imagerec.workflows", "serve_model": "imagerec.workflows", "doctor": "imagerec.diagnosis.run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'imagerec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the function itself from now on, not a module that importing put under its name
    return value
