"""The explain verb: `POST /v1/models/NAME:explain` and the page's `POST /explain` answer the predictions and a
Grad-CAM heatmap per image (the one `models.gradcam` computes), bad input gets a 4xx JSON error, the
explanations' own concurrency limit holds, and the page's switch shows the heatmap (Chromium)."""

import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

from helpers import chromium_path, watched_page
from imagerec.artefacts import loading
from imagerec.models import gradcam
from imagerec.serve.app import create_app
from imagerec.serve.limits import ServeLimits
from serve_helpers import assert_error, instances_request, png_bytes, request, send_all

pytest.importorskip("httpx")


def test_explain_answers_the_predictions_and_a_heatmap_per_image(app, classifier, dataset):
    images = dataset.x_test[:3]
    response = request(app, "POST", "/v1/models/cifar10:explain", **instances_request(images))
    assert response.status_code == 200, response.text
    body = response.json()
    np.testing.assert_allclose(body["predictions"], classifier.predict_proba(images), atol=1e-6)
    expected = gradcam.GradCam(classifier.keras_model)(images.astype(np.float32))
    assert len(body["explanations"]) == 3
    for explanation, heatmap, row in zip(body["explanations"], expected, body["predictions"]):
        assert explanation["label"] == classifier.class_names[int(np.argmax(row))]
        np.testing.assert_allclose(explanation["heatmap"], heatmap, atol=1e-3)  # H x W, rounded to 4 places
        assert explanation["overlay"].startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(explanation["overlay"].split(",", 1)[1]))) as overlay:
            assert overlay.format == "PNG" and min(overlay.size) >= 256


def test_the_page_upload_is_explained_with_its_labels(app, dataset):
    files = [("file", ("one.png", png_bytes(dataset.x_test[0])))]
    response = request(app, "POST", "/explain?top_k=2", files=files)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["filename"] == "one.png" and len(prediction["top"]) == 2
    assert prediction["label"] == prediction["top"][0]["label"] and np.shape(prediction["heatmap"]) == (32, 32)


@pytest.mark.parametrize("method, url, options, status, fragment", [
    ("POST", "/v1/models/other:explain", {"json": {"instances": [[[[0, 0, 0]]]]}}, 404, "Servable not found"),
    ("POST", "/v1/models/cifar10:explain", {"content": b"{not json"}, 400, "JSON Parse error"),
    ("POST", "/v1/models/cifar10:explain", {"json": {"instances": [[[0, 0, 0]]]}}, 400, ""),
    ("GET", "/v1/models/cifar10:explain", {}, 405, "explain takes POST"),
    ("POST", "/explain", {"files": [("file", ("x.png", b"not an image"))]}, 400, "x.png"),
    ("POST", "/explain?top_k=0", {"files": [("file", ("x.png", b"x"))]}, 400, "top_k"),
])
def test_bad_explain_requests_get_a_json_error(app, method, url, options, status, fragment):
    assert_error(request(app, method, url, **options), status, fragment)


def test_a_model_without_a_keras_graph_says_it_cannot_explain(airbench_run, dataset):
    app = create_app(loading.load_model(airbench_run / "saved_model" / "my_model"), "cifar10")
    assert_error(request(app, "POST", "/v1/models/cifar10:explain", **instances_request(dataset.x_test[:1])), 501,
                 "cannot explain")


def test_the_explanations_own_concurrency_limit_holds_and_predictions_go_on(classifier, dataset, monkeypatch):
    """One explanation slot: of four explanations sent at once, never two are computed together, all are answered,
    and predictions sent meanwhile are too; past the waiting room (8 a slot), 503 with Retry-After."""
    import threading
    import time

    from imagerec.serve import explain

    app = create_app(classifier, "cifar10", ServeLimits(max_concurrent_explain=1))
    running, most, lock = [0], [0], threading.Lock()
    real = explain._explainer

    def counting(state):
        explainer = real(state)

        def call(images, classes):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                time.sleep(0.05)  # long enough for the others to arrive
                return explainer(images, classes)
            finally:
                with lock:
                    running[0] -= 1
        return call
    monkeypatch.setattr(explain, "_explainer", counting)
    body = instances_request(dataset.x_test[:8])
    calls = [("POST", "/v1/models/cifar10:explain", body)] * 4 + [("POST", "/v1/models/cifar10:predict", body)] * 4
    responses = asyncio.run(send_all(app, calls))
    assert [response.status_code for response in responses] == [200] * 8 and most[0] == 1
    crowded = asyncio.run(send_all(app, [("POST", "/v1/models/cifar10:explain", body)] * 12))
    statuses = [response.status_code for response in crowded]
    assert statuses.count(200) >= 9 and set(statuses) <= {200, 503} and 503 in statuses  # 1 running + 8 waiting
    assert all(response.headers["retry-after"] == "1" for response in crowded if response.status_code == 503)


def test_the_pages_switch_shows_where_the_model_looked_in_chromium(live_server, image_folder):
    if not chromium_path():
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    photo = image_folder / "test" / "blue_checks" / "002.jpg"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page, problems = watched_page(browser)
            page.goto(live_server + "/")
            page.check("#explain")
            page.set_input_files("#files", str(photo))
            page.wait_for_selector(".card img.heat", timeout=60_000)
            page.wait_for_function("document.querySelector('.card img.heat').naturalWidth > 0", timeout=30_000)
            width = page.evaluate("document.querySelector('.card img.heat').naturalWidth")
            labels = page.locator(".card .row").count()
        finally:
            browser.close()
    assert problems == [] and width >= 256 and labels == 4  # the overlay decoded (the CSP allows data:), and labels
