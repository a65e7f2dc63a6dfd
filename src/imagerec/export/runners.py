"""Running an export in its own runtime: Keras (safe mode) and TensorFlow through `artefacts.loading`, the one
way imagerec opens those files; LiteRT's interpreter; onnxruntime."""

from pathlib import Path

import numpy as np

from imagerec.artefacts import layout, loading


def run_export(path, format_name: str, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities (N, K) float32 of the exported model at `path`, computed by that format's runtime."""
    predict = {"keras": _keras_runner, "h5": _keras_runner, "savedmodel": _saved_model_runner,
               "tflite": _litert_runner, "onnx": _onnx_runner}[format_name](Path(path))
    images = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(predict(images[start:start + batch_size]), np.float32)
                           for start in range(0, len(images), batch_size)])


def _keras_runner(path: Path):
    model = loading.open_keras_file(path, path, layout.format_of(path), safe_mode=True)
    return lambda batch: model(batch, training=False)


def _saved_model_runner(path: Path):
    predict_batch, _, _, loaded = loading.open_saved_model(path, path)
    return lambda batch: (loaded, predict_batch(batch))[1]  # `loaded` kept alive while its signature runs


def _litert_runner(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def predict(batch):
        interpreter.resize_tensor_input(input_index, batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    return predict


def _onnx_runner(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]
