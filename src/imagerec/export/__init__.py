"""Exports: a model in the formats people deploy, each proven in its own runtime against Keras.

    checked     `export_model`: written under a temporary name, run, compared, then kept and recorded
    writers     each format written (Keras' save/export; int8 TFLite and ONNX calibrated on images)
    runners     each format run by its runtime (Keras, TensorFlow, LiteRT, onnxruntime)

The names below are importable from `imagerec.export` itself; each loads its module on first use (the CLI
reads `FORMATS` without TensorFlow).
"""

from imagerec import lazy

_EXPORTS = {
    "export_model": "checked", "export_arrays": "checked", "ExportResult": "checked", "FORMATS": "checked",
    "SUFFIXES": "checked", "QUANTIZABLE": "checked", "FLOAT_TOLERANCE": "checked", "describe": "checked",
    "check_counts": "checked", "default_path": "checked", "require": "checked", "run_export": "runners",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy.exports(__name__, _EXPORTS)
