"""Warm starts: a new net begins from weights learned before: an earlier run's layers, or a backbone's weights.

`--weights imagenet|PATH` fills a Keras Applications backbone (`backbones.BACKBONES`) with Keras' ImageNet download
or a `.weights.h5` file of that backbone, checked before anything is written.

`--init-from RUN_DIR` reads an earlier imagerec run (safely, as `load_model` does) and copies into the new net
every layer whose name and weight shapes match, except the head when the classes differ: a CIFAR-10 net gives
its filters to a net for another small-image data set, which gets a new head for its own classes. Keras'
`load_weights(skip_mismatch=True)` matches by position in the layer list, not by name, and cannot leave out
a head whose shape happens to match, hence this module.
"""

import dataclasses
import re
import warnings
from pathlib import Path

import keras
import numpy as np

from imagerec.errors import UserError, first_line
from imagerec.models import backbones


@dataclasses.dataclass
class Source:
    """Weights to start from: {layer name: [arrays]} of an earlier model, and the classes it predicted."""

    path: str
    weights: dict
    class_names: tuple


def read_run(path, trust_model: bool = False) -> Source:
    """The weights of the model in run directory (or model file) `path`, loaded safely unless `trust_model`."""
    from imagerec.artefacts import loading

    classifier = loading.load_model(path, trust_model=trust_model)
    if classifier.keras_model is None:
        raise UserError(f"`init_from` needs a Keras model (a run directory, .keras, .h5 or .weights.h5), got a "
                        f"{classifier.format}: {path}")
    weights = {name: [np.asarray(variable) for variable in layer.weights]
               for name, layer in layers_with_weights(classifier.keras_model).items()}
    return Source(str(path), weights, tuple(classifier.class_names))


def layers_with_weights(model) -> dict:
    """{name: layer} of every layer holding weights, nested models (an inference wrapper, a backbone) opened."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(layers_with_weights(layer))
        elif layer.weights:
            found[layer.name] = layer
    return found


def head_name(net) -> str | None:
    """The net's classification head: its last Dense layer."""
    dense = [name for name, layer in layers_with_weights(net).items() if isinstance(layer, keras.layers.Dense)]
    return dense[-1] if dense else None


def apply(net, source: Source, class_names) -> dict:
    """Copy `source`'s matching layers into `net`; {"from", "loaded": [names], "new": [names]}. The head is new
    when the classes differ. UserError when nothing matches (another family of model)."""
    head = head_name(net) if tuple(class_names) != source.class_names else None
    loaded, new = [], []
    for name, layer in layers_with_weights(net).items():
        weights = source.weights.get(name)
        shapes_match = weights is not None and [w.shape for w in weights] == [tuple(v.shape) for v in layer.weights]
        if name != head and shapes_match:
            for variable, value in zip(layer.weights, weights):
                variable.assign(value.astype(variable.dtype))
            loaded.append(name)
        else:
            new.append(name)
    if not loaded:
        raise UserError(f"no layer of {source.path} matches the {net.name} model by name and shape: `init_from` "
                        f"takes a run of the same model family")
    return {"from": source.path, "loaded": loaded, "new": new}


def describe(record: dict) -> str:
    """One line on what a warm start loaded and what starts fresh."""
    new = ", ".join(record["new"][:6]) + (" ..." if len(record["new"]) > 6 else "") if record["new"] else "none"
    return (f"imagerec: init from {record['from']}: {len(record['loaded'])} layers loaded, "
            f"{len(record['new'])} new ({new})")


def read_backbone_weights(model_name: str, weights: str) -> list:
    """The weight arrays of backbone `model_name` from "imagenet" (Keras' download, cached in ~/.keras/models) or
    a .weights.h5 file of that backbone; UserError for another model, no internet or a file of another net."""
    if model_name not in backbones.BACKBONES:
        raise UserError(f"`weights` applies to the Keras Applications backbones ({', '.join(backbones.BACKBONES)}); "
                        f"the model is {model_name!r}")
    if weights == "imagenet":
        try:
            return backbones.build_backbone(model_name, (224, 224, 3), weights="imagenet").get_weights()
        except Exception as error:  # noqa: BLE001 - Keras raises a bare Exception for a failed download
            file_name = re.search(r"([\w.-]+\.h5)", str(error))
            reason = first_line(error, 300).rpartition(" -- ")[2]  # Keras: "URL fetch failure on URL: None -- reason"
            raise UserError(f"could not download the ImageNet weights of {model_name}"
                            f"{' (' + file_name.group(1) + ')' if file_name else ''}: {reason}; they need internet "
                            f"once (Keras keeps them in ~/.keras/models/), or pass `weights` PATH, a .weights.h5 file "
                            f"of {model_name}") from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"`weights` is none, imagenet or a .weights.h5 file; {path} does not exist")
    backbone = backbones.build_backbone(model_name, (96, 96, 3))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns once per layer it cannot fill, then raises
            backbone.load_weights(str(path))
    except Exception as error:  # noqa: BLE001 - a file of another net fails in many ways (ValueError, KeyError...)
        reason = first_line(error, 300).split(". Example")[0]  # Keras goes on to one layer's details
        raise UserError(f"{path} is not a weights file of the {model_name} backbone: {reason}") from None
    return backbone.get_weights()
