"""Loading any model file imagerec writes (or any Keras image classifier) as a `Classifier`, safely.

Loading is safe by default: `.keras` files load in Keras' safe mode (no Lambda layers, no arbitrary code);
`.h5` files and SavedModels, which safe mode does not cover, load only when the manifest beside them vouches
for them; any artefact that no longer matches its manifest is refused. `trust_model=True` (the CLI's
`--trust-model`) lifts both checks, for models whose author the user trusts. `open_keras_file` and
`open_saved_model` are the one way a Keras file or a SavedModel is opened (exports are checked with them too).
"""

import re
import tempfile
import warnings
import zipfile
from pathlib import Path

from imagerec.artefacts import keras_archive, layout, manifest, model_info
from imagerec.artefacts.classifier import Classifier
from imagerec.errors import UserError, first_line


def load_model(path, trust_model: bool = False) -> Classifier:
    """Load a model file or folder written by imagerec (or any Keras image classifier).

    Accepts `.keras`, `.h5`, `.weights.h5` (needs the run's model.json beside it) and a SavedModel
    folder. Raises UserError for a missing, corrupt or non-image model, one whose input is over
    model_info.MAX_INPUT_SIDE a side, and (unless `trust_model`) for one that needs arbitrary code to load, an
    `.h5`/SavedModel no manifest vouches for, a modified artefact or model.json, a file whose bytes are not
    the format its name says, or a `.keras` archive that inflates like a zip bomb.
    """
    path = layout.resolve_model(path)  # a run directory: its native-format model
    if not path.exists():
        raise UserError(f"model path does not exist: {path}")
    format_name = _format_of(path)
    info = _model_info(path, trust_model)
    if trust_model:
        if format_name == "keras" and zipfile.is_zipfile(path):
            keras_archive.check(path, path)  # trusted code is not trusted to fit in memory
        return _load(path, path, format_name, info, safe_mode=False)
    # Check and load the same bytes: a private copy, hashed as it is written (see manifest.verified_copy), named
    # after the format that was checked (Keras picks its loader from the name). Everything is read into
    # memory while loading, so the copy goes once the model is loaded.
    with tempfile.TemporaryDirectory(prefix="imagerec-model-") as private:
        copy = _verified_copy(path, format_name, Path(private))
        _check_bytes_are(format_name, copy, path)
        return _load(copy, path, format_name, info, safe_mode=True)


def _load(source: Path, path: Path, format_name: str, info, safe_mode: bool) -> Classifier:
    """Open `source` (the file or folder to read) as the model at `path` (what messages use), described by
    `info` (its model.json, or None)."""
    if format_name == "savedmodel":
        return _load_saved_model(source, path, info)
    if format_name == "weights":
        return _load_weights(source, path, info)
    return _load_keras(source, path, format_name, info, safe_mode)


def _format_of(path: Path) -> str:
    format_name = layout.format_of(path)
    if format_name is not None:
        return format_name
    raise UserError(f"{path} is not a model: expected a .keras, .h5 or .weights.h5 file, "
                    f"a SavedModel folder or a run directory")


_TRUST_HINT = "pass `trust_model=True` only if you trust where it came from"


def _verified_copy(path: Path, format_name: str, private: Path) -> Path:
    """The artefact copied into `private` and checked there; UserError for a modified artefact, and for an
    .h5/SavedModel that no manifest vouches for, before anything of it is opened as a model."""
    try:
        state, detail, copy = manifest.verified_copy(path, private, layout.FORMATS[format_name].copy_name)
    except OSError as error:
        raise UserError(f"cannot read model {path}: {error.strerror or error}") from None
    if state == manifest.MODIFIED:
        raise UserError(f"refusing to load {path}: it changed after imagerec wrote it ({detail}); {_TRUST_HINT}")
    if state == manifest.UNLISTED and format_name in ("h5", "savedmodel"):
        kind = "an HDF5 model" if format_name == "h5" else "a SavedModel"
        raise UserError(f"refusing to load {path}: it is {kind} that no imagerec manifest vouches for ({detail}), "
                        f"and loading one can run code that Keras' safe mode does not check; use a .keras file, "
                        f"or {_TRUST_HINT}")
    return copy


def _check_bytes_are(format_name: str, copy: Path, path: Path) -> None:
    """UserError unless the copy's bytes are the format its name promises (an HDF5 file named model.keras
    would otherwise skip the manifest rule), and a .keras archive is no zip bomb."""
    if format_name == "savedmodel":
        return
    import h5py

    is_hdf5 = h5py.is_hdf5(copy)
    if format_name == "keras" and (is_hdf5 or not zipfile.is_zipfile(copy)):
        raise UserError(f"cannot load model {path}: it is not a .keras file (those are zip archives)"
                        + (": it is an HDF5 file" if is_hdf5 else ", or it is damaged"))
    if format_name != "keras" and not is_hdf5:
        raise UserError(f"cannot load model {path}: it is not an HDF5 file, or it is damaged")
    if format_name == "keras":
        keras_archive.check(copy, path)


def _model_info(path: Path, trust_model: bool):
    """The ModelInfo of the model.json describing `path` (see layout.describing_folders), read once, or None
    when there is none; UserError when it is damaged, or (unless `trust_model`) changed since it was written."""
    for folder in layout.describing_folders(path):
        info_path = folder / layout.MODEL_INFO_FILE
        if not info_path.is_file():
            continue
        if info_path.stat().st_size > model_info.MAX_INFO_BYTES:
            raise UserError(f"{info_path} is over {model_info.MAX_INFO_BYTES // 2**20} MiB: not a model description")
        try:
            state, detail, content = manifest.read_checked(info_path)
        except OSError as error:
            raise UserError(f"cannot read {info_path}: {error.strerror or error}") from None
        if state == manifest.MODIFIED and not trust_model:
            raise UserError(f"refusing to load {path}: its {layout.MODEL_INFO_FILE} (classes, input shape) changed "
                            f"after imagerec wrote it ({detail}); {_TRUST_HINT}")
        info = model_info.parse_model_info(content)
        if info is None:
            raise UserError(f"{info_path} is damaged: it needs `class_names` (a non-empty list) and `input_shape` "
                            f"(height, width, 3; sides 1 to {model_info.MAX_INPUT_SIDE})")
        return info
    return None


def _class_names(info, num_classes: int) -> tuple:
    if info and len(info.class_names) == num_classes:
        return info.class_names
    return tuple(f"class_{index}" for index in range(num_classes))


def _image_input_shape(shape, path: Path) -> tuple:
    shape = tuple(shape)
    if len(shape) != 4 or shape[-1] != 3 or None in shape[1:]:
        raise UserError(f"{path} is not an image classifier: its input shape is {shape}, "
                        f"expected (batch, height, width, 3)")
    if not all(1 <= int(side) for side in shape[1:3]):
        raise UserError(f"{path} is not an image classifier: its input shape is {shape}")
    model_info.check_input_shape(shape, path)
    return tuple(int(size) for size in shape[1:])


def _from_keras_model(model, path: Path, format_name: str, info) -> Classifier:
    if len(model.inputs) != 1:
        raise UserError(f"{path} has {len(model.inputs)} inputs; an image classifier has one")
    _image_input_shape(model.inputs[0].shape, path)  # raises for a model that does not take images
    if len(model.outputs) != 1:
        raise UserError(f"{path} has {len(model.outputs)} outputs; an image classifier has one")
    num_classes = _class_count(model.outputs[0].shape, path)
    return Classifier.from_keras(model, _class_names(info, num_classes), path, format_name)


def _class_count(output_shape, path: Path) -> int:
    """K of an output of shape (batch, K): one probability per class; UserError for any other shape."""
    shape = tuple(output_shape)
    if len(shape) != 2 or shape[1] is None:
        raise UserError(f"{path} is not an image classifier: its output shape is {shape}, expected (batch, classes)")
    return int(shape[1])


def _load_keras(source: Path, path: Path, format_name: str, info, safe_mode: bool = True) -> Classifier:
    return _from_keras_model(open_keras_file(source, path, format_name, safe_mode), path, format_name, info)


def open_keras_file(source: Path, path: Path, format_name: str = "keras", safe_mode: bool = True):
    """The keras.Model in the .keras or .h5 file `source` (reported as `path`), for inference; UserError for a
    damaged file, one that needs arbitrary code (in `safe_mode`), or one naming classes this Python lacks."""
    import keras

    from imagerec.models import layers  # noqa: F401 - registers imagerec's own layers, which saved models name

    if format_name == "keras" and not zipfile.is_zipfile(source):
        raise UserError(f"cannot load model {path}: it is not a .keras file (those are zip archives), or it is damaged")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(source, safe_mode=safe_mode, compile=False)  # inference only
    except Exception as error:  # noqa: BLE001 - corrupt files fail in many ways inside h5py/zipfile
        if safe_mode and "safe_mode" in str(error):
            raise UserError(f"refusing to load {path}: it needs to run arbitrary Python code to load (e.g. a Lambda "
                            f"layer), which Keras' safe mode blocks; {_TRUST_HINT}") from None
        unknown = re.search(r"Could not locate (?:function|class) '([^']{1,100})'", str(error))
        if unknown:
            raise UserError(f"cannot load model {path}: it names {unknown.group(1)!r}, a function or class this "
                            f"Python does not have; import the code that registers it (keras.saving."
                            f"register_keras_serializable) before loading; if it also needs arbitrary code to "
                            f"load, {_TRUST_HINT}") from None
        raise UserError(f"cannot load model {path}: {first_line(error).replace(str(source), str(path))}") from error


def _load_weights(source: Path, path: Path, info) -> Classifier:
    if not info or not info.architecture:
        raise UserError(f"{path} holds weights only; its run's {layout.MODEL_INFO_FILE} (architecture and classes) "
                        f"was not found beside it")
    from imagerec.models import inference, registry  # Keras, only for weights-only files

    net = registry.build_model(info.architecture, len(info.class_names), info.input_shape)
    model = inference.inference_model(net, test_time_augmentation=info.test_time_augmentation,
                                      temperature=info.temperature)
    try:
        model.load_weights(source)
    except Exception as error:  # noqa: BLE001
        raise UserError(f"cannot load weights {path}: {first_line(error).replace(str(source), str(path))}") from error
    return _from_keras_model(model, path, "weights", info)


def _load_saved_model(source: Path, path: Path, info) -> Classifier:
    predict_batch, input_shape, num_classes, loaded = open_saved_model(source, path)
    classifier = Classifier(str(path), "savedmodel", _class_names(info, num_classes), input_shape, predict_batch)
    classifier._loaded = loaded  # keep the trackable object alive as long as its signature is used
    return classifier


def open_saved_model(source: Path, path: Path):
    """(predict float32 batch → probabilities, input shape (H, W, C), number of classes, the loaded object to
    keep alive) of the SavedModel folder `source` (reported as `path`), through its `serving_default`
    signature; UserError for one that is damaged or not an image classifier."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(source))
        signature = loaded.signatures["serving_default"]
    except Exception as error:  # noqa: BLE001
        raise UserError(f"cannot load SavedModel {path}: {first_line(error).replace(str(source), str(path))}") from error
    input_specs = signature.structured_input_signature[1]
    if len(input_specs) != 1:
        raise UserError(f"{path} has {len(input_specs)} inputs; an image classifier has one")
    (input_name, spec), = input_specs.items()
    input_shape = _image_input_shape(spec.shape, path)
    if len(signature.structured_outputs) != 1:
        raise UserError(f"{path} has {len(signature.structured_outputs)} outputs; an image classifier has one")
    (output_name, output_spec), = signature.structured_outputs.items()
    num_classes = _class_count(output_spec.shape, path)

    def predict_batch(batch):
        return signature(**{input_name: tf.constant(batch, dtype=spec.dtype)})[output_name]

    return predict_batch, input_shape, num_classes, loaded
