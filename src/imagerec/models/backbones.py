"""Keras Applications backbones under a new head (Keras' transfer-learning guide), registered by name."""

import functools

import keras

from imagerec.models.registry import INPUT_NAME, register_model


# name: (the keras.applications builder, its options, the input scaling the model puts in front of it).
# MobileNetV3 and EfficientNetV2 take raw 0-255 pixels themselves (include_preprocessing); ResNet50V2 expects
# its preprocess_input's [-1, 1], here a Rescaling layer, so that every saved model takes raw pixels.
BACKBONES = {
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": True}, None),
    "efficientnet_v2_b0": ("EfficientNetV2B0", {"include_preprocessing": True}, None),
    "resnet50_v2": ("ResNet50V2", {}, (1 / 127.5, -1.0)),
}
BACKBONE_LAYER = "backbone"  # the name of the nested Keras Applications model in a backbone classifier
BACKBONE_MIN_SIDE = 32  # Keras Applications refuse smaller inputs


def build_backbone(name: str, input_shape, weights=None) -> keras.Model:
    """The Keras Applications model `name` without its top, named BACKBONE_LAYER; `weights` None or "imagenet"
    (Keras' download and cache)."""
    builder, options, _ = BACKBONES[name]
    backbone = getattr(keras.applications, builder)(input_shape=tuple(input_shape), include_top=False,
                                                    weights=weights, **options)
    backbone.name = BACKBONE_LAYER  # not the builder's `name`: EfficientNetV2 looks its block layout up by it
    return backbone


def backbone_classifier(input_shape, num_classes: int, backbone_name: str) -> keras.Model:
    """A Keras Applications backbone with a new head, as Keras' transfer-learning guide builds it: raw pixels →
    random flip and shift (training only) → [input scaling] → backbone, called in inference mode so that its
    BatchNormalization keeps its statistics even when fine-tuned → global average pool → dropout 0.2 → softmax."""
    _, _, scaling = BACKBONES[backbone_name]
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.RandomFlip("horizontal", name="augment_flip")(inputs)
    x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", name="augment_shift")(x)
    if scaling:
        x = keras.layers.Rescaling(scaling[0], offset=scaling[1], name="input_scaling")(x)
    x = build_backbone(backbone_name, input_shape)(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=backbone_name)


def _register_backbone(name: str):
    builder = functools.partial(backbone_classifier, backbone_name=name)
    builder.__name__ = name
    builder.__doc__ = f"keras.applications.{BACKBONES[name][0]} (include_top=False) with a new softmax head."
    register_model("backbone", "probabilities", min_side=BACKBONE_MIN_SIDE, description="backbone")(builder)


for _name in BACKBONES:
    _register_backbone(_name)
