"""TensorFlow Serving's REST API: status, metadata and predict in every body form TF Serving takes."""

import base64

import numpy as np
import pytest


from serve_helpers import (request, png_bytes, instances_request)

httpx = pytest.importorskip("httpx")


def test_health_status_and_metadata(app, classifier):
    health = request(app, "GET", "/healthz")
    assert health.json() == {"status": "ok", "model": "cifar10"}
    assert health.headers["server-timing"].startswith("app;dur=")  # the server's own time, for clients
    for path in ("/v1/models/cifar10", "/v1/models/cifar10/versions/1"):
        status = request(app, "GET", path).json()["model_version_status"][0]
        assert status["state"] == "AVAILABLE" and status["status"]["error_code"] == "OK"
    metadata = request(app, "GET", "/v1/models/cifar10/metadata").json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (spec,) = signature["inputs"].values()
    assert [dim["size"] for dim in spec["tensor_shape"]["dim"]] == ["-1", "32", "32", "3"]
    assert spec["dtype"] == "DT_FLOAT" and metadata["class_names"] == list(classifier.class_names)


def test_tf_serving_predict_accepts_arrays_b64_named_and_columnar(app, classifier, dataset):
    images = dataset.x_test[:3]
    expected = classifier.predict_proba(images)
    encoded = [{"b64": base64.b64encode(png_bytes(image)).decode()} for image in images]
    bodies = {
        "predictions": [{"instances": images.tolist()}, {"instances": encoded},
                        {"instances": [{"image": image.tolist()} for image in images]},
                        {"instances": [{"image": item} for item in encoded], "signature_name": "serving_default"}],
        "outputs": [{"inputs": images.tolist()}, {"inputs": {"image": images.tolist()}}],
    }
    for key, variants in bodies.items():
        for body in variants:
            response = request(app, "POST", "/v1/models/cifar10:predict", json=body)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()[key], expected, atol=1e-6)
    versioned = request(app, "POST", "/v1/models/cifar10/versions/1:predict", **instances_request(images))
    np.testing.assert_allclose(versioned.json()["predictions"], expected, atol=1e-6)
