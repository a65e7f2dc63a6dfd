"""The data plane: inference within the request's deadline."""


import pytest

from imagerec.serve import ServeLimits, create_app

from serve_helpers import (request, instances_request, assert_error)

httpx = pytest.importorskip("httpx")


def test_inference_past_its_deadline_is_504(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(timeout_s=0.05, batch_window_ms=1000))
    assert_error(request(app, "POST", "/v1/models/cifar10:predict", **instances_request(dataset.x_test[:1])), 504,
                 "did not finish")
    assert request(app, "GET", "/healthz").status_code == 200


def test_large_json_bodies_are_parsed_in_worker_processes(classifier, dataset):
    """Over --parse-process-mb a body is parsed in a spawned process: the same answer, its refusals the same
    JSON errors (RequestError crosses the process boundary whole), for TF Serving's REST API and v2 JSON."""
    import numpy as np

    from serve_helpers import png_bytes

    in_threads = create_app(classifier, "cifar10")
    in_processes = create_app(classifier, "cifar10", ServeLimits(parse_process_mb=0.001))
    body = {"instances": [*dataset.x_test[:2].tolist(), {"b64": __import__("base64").b64encode(
        png_bytes(dataset.x_test[2])).decode()}]}
    answers = [request(app, "POST", "/v1/models/cifar10:predict", json=body) for app in (in_threads, in_processes)]
    assert [answer.status_code for answer in answers] == [200, 200]
    np.testing.assert_allclose(answers[1].json()["predictions"], answers[0].json()["predictions"], atol=1e-6)
    assert in_processes.state.processes is not None and getattr(in_threads.state, "processes", None) is None
    v2 = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 32, 32, 3],
                      "data": dataset.x_test[:1].ravel().tolist()}]}
    answer = request(in_processes, "POST", "/v2/models/cifar10/infer", json=v2)
    np.testing.assert_allclose(answer.json()["outputs"][0]["data"], answers[0].json()["predictions"][0], atol=1e-6)
    bad = {"instances": [np.full((32, 32, 3), 300).tolist()]}
    assert_error(request(in_processes, "POST", "/v1/models/cifar10:predict", json=bad), 400, "0-255")
    metrics = request(in_processes, "GET", "/metrics").text
    assert "imagerec_images_decoded_total 1.0" in metrics  # the b64 image decoded in the child is counted
    in_processes.state.processes.shutdown()
