import json
import re

import numpy as np
from PIL import Image

from helpers import chromium_path, run_cli

FIGURES = ("confusion_counts.png", "confusion_normalised.png", "reliability.png", "mistakes.png", "samples.png")


def test_report_of_a_real_run_has_figures_numbers_and_a_self_contained_page(airbench_run, tmp_path):
    out = tmp_path / "report"
    # No --data: the report finds the data the run was trained on.
    result = run_cli("report", airbench_run, "--out", out, "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "report.html" in result.stdout
    for name in (*FIGURES, "accuracy.png", "loss.png"):  # curves drawn from the run's history
        with Image.open(out / name) as image:
            pixels = np.asarray(image.convert("L"))
        assert image.width >= 300 and image.height >= 200
        assert pixels.std() > 10  # a drawn figure, not a blank canvas

    report = json.loads((out / "report.json").read_text())
    matrix = np.asarray(report["confusion_matrix"])
    assert matrix.sum() == report["count"] == 60
    for index, name in enumerate(report["run"]["data"]["class_names"]):
        assert matrix[index].sum() == report["per_class"][name]["support"] == 15
    assert report["top1_accuracy"] == np.trace(matrix) / matrix.sum()
    assert abs(report["top1_accuracy"] - report["run"]["test_accuracy"]) < 1e-9  # same model, same images
    assert 0 <= report["calibration"]["expected_calibration_error"] <= 1
    assert set(report["data"]["train_counts"].values()) == {60} and set(report["data"]["test_counts"].values()) == {15}
    assert report["data"]["skipped_count"] == 0

    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES) + 2  # + the run's accuracy and loss curves
    assert not re.search(r"(?:src|href)\s*=\s*[\"'](?!data:)", page)  # nothing loaded from elsewhere
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "green_rings" in page and "macro average" in page


def test_report_of_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    result = run_cli("report", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"imagerec: error: {tmp_path} is not a finished run directory "
                                                  "(it has no metrics.json)"]


def test_report_page_renders_in_headless_chromium_without_errors(airbench_run, image_folder, tmp_path):
    import pytest

    if not chromium_path():
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report"
    assert run_cli("report", airbench_run, "--data", image_folder, "--out", out,
                   "--cache-dir", tmp_path / "cache").returncode == 0
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto((out / "report.html").as_uri())
            widths = page.evaluate("Array.from(document.images).map(image => image.naturalWidth)")
            page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert requests == [(out / "report.html").as_uri()]  # the page fetched nothing else
    assert len(widths) == len(FIGURES) + 2 and all(width > 100 for width in widths)  # every image decoded
    with Image.open(tmp_path / "screenshot.png") as shot:
        assert shot.height > 900 and np.asarray(shot.convert("L")).std() > 10


def test_control_characters_in_class_names_reach_no_figure_and_no_warning(tmp_path):
    import warnings

    from imagerec.artefacts.classifier import Classifier
    from imagerec.evaluation import report

    names = ("\x1b[31mred", "blue\x07")
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (12, 8, 8, 3)).astype(np.uint8), np.arange(12) % 2

    def predict(batch):  # always fairly sure of class 0: half the images are confident mistakes
        return np.tile([0.9, 0.1], (len(batch), 1)).astype(np.float32)

    classifier = Classifier("m.keras", "keras", names, (8, 8, 3), predict)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report.write_report(tmp_path / "report", classifier, images, labels)
    assert not [str(warning.message) for warning in caught if "Glyph" in str(warning.message)]


def test_report_robustness_adds_its_table_and_figure_and_the_sections_read_in_order(airbench_run, tmp_path):
    """`imagerec report --robustness`: the numbers in report.json, the heat-table figure, the HTML table; the
    page's sections in the order a user asks (headline, training, errors, calibration, robustness, mistakes, data)."""
    out = tmp_path / "report"
    result = run_cli("report", airbench_run, "--out", out, "--robustness", "--corruptions", "contrast,gif_web",
                     "--severities", "1,5", "--corruption-images", "8")
    assert result.returncode == 0, result.stderr
    numbers = json.loads((out / "report.json").read_text())["robustness"]
    assert set(numbers["corruptions"]) == {"contrast", "gif_web"} and numbers["count"] == 8
    assert list(numbers["corruptions"]["contrast"]["accuracy"]) == ["1", "5"]
    with Image.open(out / "robustness.png") as figure:
        assert figure.format == "PNG"
    page = (out / "report.html").read_text()
    headings = re.findall(r"<h2>([^<]+)</h2>", page)
    assert headings == ["Training", "Errors by class", "Calibration", "Robustness", "Mistakes", "Data", "Run"]
    assert "gif_web *" in page and "Left out: frost" in page


def test_the_mistakes_are_shown_beside_where_the_model_looked(classifier, dataset, tmp_path):
    from imagerec.evaluation import report

    wrong = (np.asarray(dataset.y_test) + 1) % len(classifier.class_names)  # every answer now a mistake
    report.write_report(tmp_path, classifier, dataset.x_test, wrong)
    assert "where the model looked (Grad-CAM)" in (tmp_path / "report.html").read_text()
    with Image.open(tmp_path / "mistakes.png") as gallery:  # 16 mistakes: 2 rows of 8, each above its heatmap
        assert gallery.height > 4 * 2.0 * 100
