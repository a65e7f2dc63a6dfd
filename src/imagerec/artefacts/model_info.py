"""model.json: what a model file alone does not say (its classes, input shape, architecture), one schema for run
directories and exports, and the checks that keep a crafted one from asking for the impossible."""

import dataclasses
import json
import math
from pathlib import Path

from imagerec import fileio
from imagerec.artefacts import layout
from imagerec.data.dataset import MAX_IMAGE_SIDE
from imagerec.errors import UserError

MAX_INPUT_SIDE = MAX_IMAGE_SIDE  # the largest input side a model may have: the largest `image_size` trains at
MAX_INFO_BYTES = 16 * 2**20  # a model.json larger than this is not one (10,000 class names fit in ~0.5 MB)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """model.json: what a model file alone does not say. One schema for run directories and exports."""

    class_names: tuple
    input_shape: tuple  # (height, width, channels)
    architecture: str | None = None  # the registered model name, to rebuild weights-only files; None: unknown
    test_time_augmentation: bool = False  # the architecture wrapped in test-time views
    exported_from: str | None = None  # the model an export was written from
    temperature: float | None = None  # the calibration temperature inside the model (None: uncalibrated)

    def as_json(self) -> dict:
        return {"model": self.architecture, "test_time_augmentation": self.test_time_augmentation,
                "input_shape": list(self.input_shape), "class_names": list(self.class_names),
                "exported_from": self.exported_from, "temperature": self.temperature}

    @classmethod
    def from_json(cls, content: dict):
        """A ModelInfo, or None for content that is not one: `class_names` a non-empty list, `input_shape`
        (height, width, 3) of whole numbers from 1 to MAX_INPUT_SIDE."""
        try:
            info = cls(tuple(str(name) for name in content["class_names"]), tuple(content["input_shape"]),
                       content.get("model"), bool(content.get("test_time_augmentation", False)),
                       content.get("exported_from"), content.get("temperature"))
        except (KeyError, TypeError, AttributeError):
            return None
        temperature = info.temperature
        if temperature is not None and not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                                            and math.isfinite(temperature) and temperature > 0):
            return None
        shape_ok = len(info.input_shape) == 3 and info.input_shape[2] == 3 and all(
            isinstance(side, int) and not isinstance(side, bool) and 1 <= side <= MAX_INPUT_SIDE
            for side in info.input_shape)
        architecture_ok = info.architecture is None or isinstance(info.architecture, str)
        return info if shape_ok and architecture_ok and info.class_names else None


def check_input_shape(shape, path) -> None:
    """UserError when a model at `path` whose input is `shape` (batch, height, width, channels) takes images over
    MAX_INPUT_SIDE a side: checked from a .keras file's declared inputs before Keras opens it, and from a loaded
    model's input (a 50000x50000 input loads fine, then takes 30 GB for one image)."""
    sides = [side for side in list(shape)[1:-1] if isinstance(side, int)]
    if any(side > MAX_INPUT_SIDE for side in sides):
        raise UserError(f"refusing to load {path}: it takes images of shape {list(shape)}, over the limit of "
                        f"{MAX_INPUT_SIDE} pixels a side")


def parse_model_info(content: bytes):
    """The ModelInfo in model.json's bytes, or None when they are not one."""
    try:
        parsed = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return ModelInfo.from_json(parsed) if isinstance(parsed, dict) else None


def write_model_info(folder, info: ModelInfo) -> Path:
    path = Path(folder) / layout.MODEL_INFO_FILE
    fileio.write_json(path, info.as_json())
    return path


def folder_model_info(folder):
    """The ModelInfo in `folder`, or None."""
    content = fileio.read_json_object(Path(folder) / layout.MODEL_INFO_FILE)
    return ModelInfo.from_json(content) if content is not None else None
