"""TF Serving's gRPC API, driven by `tensorflow_serving.apis`' own PredictionServiceStub and ModelServiceStub over
grpc against a real `imagerec serve --grpc-port`, and TensorProto decoding within limits."""

import io

import numpy as np
import pytest
from PIL import Image

from imagerec.serve import ServeLimits, inputs
from imagerec.serve.limits import RequestError

grpc = pytest.importorskip("grpc")
pytest.importorskip("tensorflow_serving.apis")


@pytest.fixture(scope="module")
def channel(live_server):
    with grpc.insecure_channel(live_server.grpc, options=[("grpc.max_send_message_length", 64 * 2**20)]) as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(tensor=None, name="cifar10", **spec):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    if tensor is not None:
        request.inputs["image"].CopyFrom(tensor)
    return request


def _make_tensor(values, **options):
    import tensorflow as tf

    return tf.make_tensor_proto(values, **options)


def _probabilities(response):
    import tensorflow as tf

    return tf.make_ndarray(response.outputs["output_0"])


@pytest.mark.parametrize("form", ["tensor_content float32", "float_val", "uint8 int_val", "float64 tensor_content"])
def test_predict_through_the_stub_equals_the_keras_model(stub, classifier, dataset, form):
    from tensorflow.core.framework import tensor_pb2, types_pb2

    pixels = dataset.x_test[:3]
    if form == "tensor_content float32":
        tensor = _make_tensor(pixels.astype(np.float32))
    elif form == "float64 tensor_content":
        tensor = _make_tensor(pixels.astype(np.float64))
    else:  # typed values, as clients in other languages build them
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT if form == "float_val" else types_pb2.DT_UINT8)
        tensor.tensor_shape.dim.extend([tensor.tensor_shape.Dim(size=size) for size in pixels.shape])
        (tensor.float_val if form == "float_val" else tensor.int_val).extend(pixels.ravel().tolist())
    response = stub.Predict(_request(tensor, signature_name="serving_default", version=1), timeout=30)
    np.testing.assert_allclose(_probabilities(response), classifier.predict_proba(pixels.astype(np.float32)),
                               atol=1e-5)
    assert response.model_spec.name == "cifar10" and response.model_spec.version.value == 1


def test_predict_takes_image_files_as_strings(stub, classifier, dataset):
    buffer = io.BytesIO()
    Image.fromarray(dataset.x_test[0]).resize((50, 40)).save(buffer, "JPEG")
    files = [buffer.getvalue()]
    request = _request(_make_tensor(files, dtype="string"))
    request.output_filter.append("output_0")
    decoded = inputs.decode_images([("a", files[0])], (32, 32), ServeLimits(), float("inf"))
    np.testing.assert_allclose(_probabilities(stub.Predict(request, timeout=30)),
                               classifier.predict_proba(decoded.astype(np.float32)), atol=1e-5)


def test_metadata_and_status(channel, stub, classifier):
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc)

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "cifar10"
    response = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert [dim.size for dim in signature.inputs["image"].tensor_shape.dim] == [-1, 32, 32, 3]
    assert [dim.size for dim in signature.outputs["output_0"].tensor_shape.dim] == [-1, len(classifier.class_names)]
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "cifar10"
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=30)
    assert [(version.version, version.state) for version in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.State.AVAILABLE)]


def _bad_requests():
    from tensorflow.core.framework import tensor_pb2, types_pb2

    one = np.zeros((1, 32, 32, 3), np.float32)
    lying = _make_tensor(one)
    lying.tensor_content = lying.tensor_content[:100]
    broadcast = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
    broadcast.tensor_shape.dim.extend([broadcast.tensor_shape.Dim(size=size) for size in (10**6, 32, 32, 3)])
    return {
        "unknown model": (_request(_make_tensor(one), name="another"), "NOT_FOUND", "Servable not found"),
        "unknown version": (_request(_make_tensor(one), version=2), "NOT_FOUND", "Servable not found"),
        "version label": (_request(_make_tensor(one), version_label="canary"), "NOT_FOUND", "Servable not found"),
        "unknown signature": (_request(_make_tensor(one), signature_name="other"), "INVALID_ARGUMENT", "signature"),
        "no input": (_request(), "INVALID_ARGUMENT", "one input"),
        "wrong shape": (_request(_make_tensor(np.zeros((1, 16, 16, 3), np.float32))), "INVALID_ARGUMENT", "shape"),
        "content that lies": (_request(lying), "INVALID_ARGUMENT", "tensor_content"),
        "one value for a huge shape": (_request(broadcast), "INVALID_ARGUMENT", "over the"),
        "strings not images": (_request(_make_tensor([b"abc"], dtype="string")), "INVALID_ARGUMENT", "image[0]"),
        "pixels out of range": (_request(_make_tensor(one + 999)), "INVALID_ARGUMENT", "0-255"),
        "bool pixels": (_request(_make_tensor(np.zeros((1, 32, 32, 3), bool))), "INVALID_ARGUMENT", "dtype"),
        "unknown output": (_request(_make_tensor(one)), "INVALID_ARGUMENT", "output_filter"),
    }


@pytest.mark.parametrize("case", ["unknown model", "unknown version", "version label", "unknown signature",
                                  "no input", "wrong shape", "content that lies", "one value for a huge shape",
                                  "strings not images", "pixels out of range", "bool pixels", "unknown output"])
def test_bad_predict_gets_its_grpc_status(stub, case):
    request, code, fragment = _bad_requests()[case]
    if case == "unknown output":
        request.output_filter.append("logits")
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert raised.value.code() == getattr(grpc.StatusCode, code) and fragment in raised.value.details(), (
        raised.value.code(), raised.value.details())


def test_oversized_message_deadline_and_unimplemented_leave_the_server_up(stub, dataset):
    from tensorflow_serving.apis import classification_pb2

    huge = _request(_make_tensor(np.zeros((1500, 32, 32, 3), np.float32)))  # 18.4 MB, over --max-body-mb 16
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(huge, timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(_request(_make_tensor(dataset.x_test[:64].astype(np.float32))), timeout=0.001)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.RpcError) as raised:
        stub.Classify(classification_pb2.ClassificationRequest(), timeout=30)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    response = stub.Predict(_request(_make_tensor(dataset.x_test[:1].astype(np.float32))), timeout=30)
    assert _probabilities(response).shape[0] == 1


# ---------------------------------------------------------------- TensorProto decoding, in-process

def test_tensor_protos_decode_as_tensorflow_does(dataset):
    import tensorflow as tf

    from imagerec.serve import tensor_protos

    for values in (dataset.x_test[:2].astype(np.float32), dataset.x_test[:2].astype(np.float16),
                   dataset.x_test[:2].astype(np.int64), dataset.x_test[:2]):
        proto = tf.make_tensor_proto(values)
        np.testing.assert_array_equal(tensor_protos.tensor_to_array(proto, "image", 10**6), tf.make_ndarray(proto))
    with pytest.raises(RequestError, match="over the"):
        tensor_protos.tensor_to_array(tf.make_tensor_proto(dataset.x_test[:2]), "image", 100)
