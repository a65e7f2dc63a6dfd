"""`GET /metrics`: Prometheus' text format, parsed by prometheus_client's own parser, its counters moving with
traffic (HTTP routes in-process, gRPC calls on the live server)."""

import urllib.request

import numpy as np
import pytest

from imagerec.serve import ServeLimits, create_app

from serve_helpers import instances_request, request

parser = pytest.importorskip("prometheus_client.parser")


def _samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of every sample in an exposition."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in parser.text_string_to_metric_families(text) for sample in family.samples}


def _value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_counters_move_with_traffic(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(max_body_mb=1))
    before = _samples(request(app, "GET", "/metrics").text)
    predict = request(app, "POST", "/v1/models/cifar10:predict", **instances_request(dataset.x_test[:3]))
    assert predict.status_code == 200
    refused = request(app, "POST", "/v1/models/cifar10:predict", content=b"\0" * (2**20 + 1))
    assert refused.status_code == 413
    response = request(app, "GET", "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)
    route = "/v1/models/{model_name}:predict"
    assert _value(after, "imagerec_requests_total", route=route, status="200") == 1
    assert _value(after, "imagerec_requests_total", route=route, status="413") == 1  # refused before routing
    assert _value(after, "imagerec_images_inferred_total") - _value(before, "imagerec_images_inferred_total") == 3
    assert _value(after, "imagerec_batch_size_count") == 1 and _value(after, "imagerec_batch_size_sum") == 3
    assert _value(after, "imagerec_request_body_bytes_total") == len(predict.request.content)
    for stage in ("admission", "queue", "inference", "total"):
        assert _value(after, "imagerec_request_duration_seconds_count", stage=stage) >= 1, stage
    assert _value(after, "imagerec_queue_depth") == 0


def test_images_decoded_are_counted(app, dataset):
    from serve_helpers import png_bytes

    before = _samples(request(app, "GET", "/metrics").text)
    files = {"a": ("a.png", png_bytes(dataset.x_test[0])), "b": ("b.png", png_bytes(dataset.x_test[1]))}
    assert request(app, "POST", "/predict", files=files).status_code == 200
    after = _samples(request(app, "GET", "/metrics").text)
    assert _value(after, "imagerec_images_decoded_total") - _value(before, "imagerec_images_decoded_total") == 2


def test_grpc_calls_are_counted_on_the_live_server(live_server, dataset):
    grpc = pytest.importorskip("grpc")
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request_proto = predict_pb2.PredictRequest()
    request_proto.model_spec.name = "cifar10"
    request_proto.inputs["image"].CopyFrom(tf.make_tensor_proto(dataset.x_test[:1].astype(np.float32)))
    with grpc.insecure_channel(live_server.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(request_proto, timeout=30)
        request_proto.model_spec.name = "another"
        with pytest.raises(grpc.RpcError):
            stub.Predict(request_proto, timeout=30)
    with urllib.request.urlopen(f"{live_server}/metrics", timeout=10) as response:
        samples = _samples(response.read().decode())
    assert _value(samples, "imagerec_requests_total", route="grpc:Predict", status="OK") >= 1
    assert _value(samples, "imagerec_requests_total", route="grpc:Predict", status="NOT_FOUND") >= 1
