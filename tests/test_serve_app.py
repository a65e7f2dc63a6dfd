"""The app's routes: the page, /predict, and every bad request answered with its status and a JSON error."""

import base64

import numpy as np
import pytest
from PIL import Image

from imagerec import data
from imagerec.artefacts import loading
from imagerec.serve import ServeLimits, create_app

from helpers import chromium_path, watched_page
from serve_helpers import (request, instances_request, assert_error, saving_predict, BAD_REQUESTS, materialise)

httpx = pytest.importorskip("httpx")


def test_page_is_self_contained(app):
    response = request(app, "GET", "/")
    assert response.status_code == 200 and "<input" in response.text
    assert "src=\"http" not in response.text and "@import" not in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_predict_upload_gives_the_labels_the_cli_gives(app, classifier, image_folder, tmp_path):
    jpeg = next((image_folder / "test" / "green_rings").glob("*.jpg"))
    large = tmp_path / "large.png"
    Image.open(jpeg).resize((120, 90)).save(large)  # any size: resized like `imagerec predict` does
    files = [("file", ("cat.jpg", jpeg.read_bytes(), "image/jpeg")), ("file", ("large.png", large.read_bytes()))]
    response = request(app, "POST", "/predict?top_k=3", files=files)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected, _ = saving_predict(classifier, [jpeg, large])
    assert [item["filename"] for item in predictions] == ["cat.jpg", "large.png"]
    for got, want in zip(predictions, expected):
        assert [top["label"] for top in got["top"]] == [top["label"] for top in want["top"]][:3]
        np.testing.assert_allclose([top["probability"] for top in got["top"]],
                                   [top["probability"] for top in want["top"]][:3], atol=1e-6)


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", "image/png; charset=x"])
def test_predict_takes_the_image_file_as_the_body(app, classifier, image_folder, content_type):
    jpeg = next((image_folder / "test" / "green_rings").glob("*.jpg"))
    response = request(app, "POST", "/predict?top_k=2", content=jpeg.read_bytes(),
                       headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    (got,), ((want,), _) = response.json()["predictions"], saving_predict(classifier, [jpeg])
    assert got["filename"] == "body" and [top["label"] for top in got["top"]] == [
        top["label"] for top in want["top"]][:2]
    np.testing.assert_allclose(got["top"][0]["probability"], want["top"][0]["probability"], atol=1e-6)


@pytest.mark.parametrize("body, status, fragment", [(b"", 400, "empty file"), (b"not an image", 400, "body"),
                                                    ("bomb", 413, "pixels")])
def test_a_bad_raw_body_is_a_json_error(app, body, status, fragment):
    from serve_helpers import bomb_png

    content = bomb_png() if body == "bomb" else body
    assert_error(request(app, "POST", "/predict", content=content, headers={"Content-Type": "image/png"}), status,
                 fragment)


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_request_gets_its_status_and_a_json_error(case, classifier, dataset):
    limits = ServeLimits(max_body_mb=2, max_images=4, max_instances=8)
    app = create_app(classifier, "cifar10", limits)
    method, url, options, status, fragment = BAD_REQUESTS[case]
    assert_error(request(app, method, url, **materialise(options, dataset)), status, fragment)
    # ...and the server is still up and still right.
    good = request(app, "POST", "/v1/models/cifar10:predict", **instances_request(dataset.x_test[:1]))
    np.testing.assert_allclose(good.json()["predictions"], classifier.predict_proba(dataset.x_test[:1]), atol=1e-6)


def test_page_labels_a_chosen_and_a_dropped_image_in_headless_chromium(live_server, image_folder, classifier):
    if not chromium_path():
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright

    photo = image_folder / "test" / "blue_checks" / "002.jpg"  # 32x32, as most synthetic images
    requests = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page, problems = watched_page(browser)
            page.on("request", lambda sent: requests.append(sent.url))
            page.goto(live_server + "/")
            page.set_input_files("#files", str(photo))
            page.wait_for_selector(".card .row .label", timeout=30_000)
            page.evaluate("""(bytes) => {
                const transfer = new DataTransfer();
                transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"}));
                document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer}));
            }""", list(photo.read_bytes()))
            # Two cards of 4 labels each: the model has 4 classes, fewer than the page's 5 (it asked for 5 and
            # got 400 before the page's top_k followed the model). The page's CSP forbids eval.
            expect(page.locator(".card .row")).to_have_count(8, timeout=30_000)
            cards = page.evaluate("""Array.from(document.querySelectorAll('.card')).map(card => ({
                name: card.querySelector('.name').textContent,
                labels: Array.from(card.querySelectorAll('.label')).map(label => label.textContent),
                imageWidth: card.querySelector('img').naturalWidth}))""")
        finally:
            browser.close()
    assert problems == []
    assert all(url.startswith(live_server) or url.startswith("blob:") for url in requests)  # nothing external
    assert sorted(card["name"] for card in cards) == sorted(["dropped.jpg", photo.name])
    expected = saving_predict(classifier, [photo])[0][0]["top"][0]["label"]
    for card in cards:
        assert len(card["labels"]) == 4 and card["labels"][0] == expected and card["imageWidth"] == 32


def test_a_64_px_model_is_served_at_its_size_and_resizes_uploads_to_it(photo_run, photo_folder):
    classifier = loading.load_model(photo_run)
    app = create_app(classifier, "photos")
    metadata = request(app, "GET", "/v1/models/photos/metadata").json()
    (spec,) = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"].values()
    assert [dim["size"] for dim in spec["tensor_shape"]["dim"]] == ["-1", "64", "64", "3"]
    photo = sorted((photo_folder / "test" / "green_rings").glob("*.webp"))[0]  # 80x80 or larger, not 64x64
    expected = classifier.predict_proba(data.decode_image(photo, (64, 64))[None])
    body = {"instances": [{"b64": base64.b64encode(photo.read_bytes()).decode()}]}
    response = request(app, "POST", "/v1/models/photos:predict", json=body)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], expected, atol=1e-6)
    wrong_size = request(app, "POST", "/v1/models/photos:predict", **instances_request(np.zeros((1, 32, 32, 3))))
    assert_error(wrong_size, 400, "64")
