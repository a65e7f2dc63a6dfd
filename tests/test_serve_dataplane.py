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
