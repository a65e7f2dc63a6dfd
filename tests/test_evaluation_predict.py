"""Predicting files: finding them, one bad file among good ones, top-k order, and the printed table."""

import numpy as np
import pytest
from PIL import Image

from imagerec.artefacts.classifier import Classifier
from imagerec.evaluation import predict
from imagerec.errors import UserError


def _classifier(class_names=("cat", "dog", "frog")):
    """A Classifier whose probabilities follow each image's mean red value (no Keras needed)."""
    def probabilities(batch):
        red = batch[..., 0].mean(axis=(1, 2)) / 255
        rows = np.stack([red, 1 - red, np.full_like(red, 0.1)], axis=1)
        return rows / rows.sum(axis=1, keepdims=True)
    return Classifier("test", "keras", tuple(class_names), (8, 8, 3), probabilities)


def test_files_are_found_sorted_and_hidden_ones_left_out(tmp_path):
    for name in ("b.png", "a.png", ".hidden.png", "sub/c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [path.relative_to(tmp_path).as_posix() for path in predict.find_image_files([tmp_path])] == \
        ["a.png", "b.png", "sub/c.png"]
    with pytest.raises(UserError, match="does not exist"):
        predict.find_image_files([tmp_path / "missing.jpg"])


def test_a_bad_file_is_reported_and_the_rest_predicted_best_first(tmp_path):
    Image.new("RGB", (20, 10), (250, 0, 0)).save(tmp_path / "red.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    predictions, errors = predict.predict_files(_classifier(), [tmp_path], top_k=2)
    assert [item["path"].rsplit("/", 1)[1] for item in predictions] == ["red.png"]
    assert [top["label"] for top in predictions[0]["top"]] == ["cat", "frog"]  # red: 0.98, 0.1, 0.02
    assert [error["path"].rsplit("/", 1)[1] for error in errors] == ["broken.jpg"]
    with pytest.raises(UserError, match="`top_k` must be at least 1"):
        predict.predict_files(_classifier(), [tmp_path], top_k=0)


def test_the_table_escapes_control_characters_in_paths_and_labels():
    predictions = [{"path": "a\nforged.png", "top": [{"label": "\x1b[31mred", "probability": 0.5}]}]
    table = predict.table(predictions)
    assert "\n" not in table and "\x1b" not in table and "\\x1b[31mred  50.0%" in table
