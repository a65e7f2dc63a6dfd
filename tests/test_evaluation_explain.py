"""`imagerec predict --explain`: an overlay PNG and a heatmap per image, distinct names, and a clear refusal where
there is no Keras graph to take gradients of."""

import json

import numpy as np
from PIL import Image

from helpers import run_cli, synthetic_image


def _two_images_of_one_name(root):
    rng = np.random.default_rng(0)
    for folder, label in (("a", 0), ("b", 1)):
        (root / folder).mkdir(parents=True)
        Image.fromarray(synthetic_image(label, rng)).save(root / folder / "1.png")
    return root


def test_predict_explain_writes_an_overlay_and_a_heatmap_per_image(airbench_run, tmp_path):
    images = _two_images_of_one_name(tmp_path / "images")
    result = run_cli("predict", airbench_run, images, "--explain", tmp_path / "why", "--json")
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    pictures = sorted(item["explanation"] for item in predictions)
    assert [name.rsplit("/", 1)[1] for name in pictures] == ["1-1.png", "1-2.png"]  # two files named 1.png
    for item in predictions:
        with Image.open(item["explanation"]) as picture:
            assert picture.format == "PNG" and min(picture.size) >= 256  # large enough to see
        heatmap = np.load(item["heatmap"])
        assert heatmap.shape == (32, 32) and heatmap.min() >= 0 and heatmap.max() == 1


def test_explain_needs_a_keras_model_and_a_folder(airbench_run, tmp_path):
    images = _two_images_of_one_name(tmp_path / "images")
    result = run_cli("predict", airbench_run / "saved_model" / "my_model", images, "--explain", tmp_path / "why")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "explanations need a Keras model" in result.stderr and not (tmp_path / "why").exists()
    (tmp_path / "file").write_text("x")
    result = run_cli("predict", airbench_run, images, "--explain", tmp_path / "file")
    assert result.returncode == 2 and "--explain must be a folder" in result.stderr
