"""The Open Inference Protocol v2 routes, driven by Triton's own HTTP client against a real `imagerec serve`, and
bad bodies sent in-process: each a 4xx JSON error, the server still answering."""

import base64
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from imagerec.serve import ServeLimits, create_app, inputs

from serve_helpers import assert_error, png_bytes, request

httpclient = pytest.importorskip("tritonclient.http")

INFER = "/v2/models/cifar10/infer"


@pytest.fixture(scope="module")
def triton(live_server):
    return httpclient.InferenceServerClient(url=live_server.removeprefix("http://"))


def _pixels(dataset, count=3):
    return dataset.x_test[:count]


def _expected(classifier, pixels):
    return classifier.predict_proba(np.asarray(pixels, np.float32))


def test_health_and_metadata_through_tritonclient(triton, classifier):
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready("cifar10")
    assert not triton.is_model_ready("another")
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    metadata = triton.get_model_metadata("cifar10")
    assert {(tensor["name"], tensor["datatype"], tuple(tensor["shape"])) for tensor in metadata["inputs"]} == {
        ("image", "FP32", (-1, 32, 32, 3)), ("image_uint8", "UINT8", (-1, 32, 32, 3)), ("image_bytes", "BYTES", (-1,))}
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32",
                                    "shape": [-1, len(classifier.class_names)]}]
    assert triton.get_model_metadata("cifar10", model_version="1")["name"] == "cifar10"


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "JSON tensors"])
@pytest.mark.parametrize("datatype", ["FP32", "UINT8"])
def test_tritonclient_infer_equals_the_keras_model(triton, classifier, dataset, binary, datatype):
    pixels = _pixels(dataset)
    name = "image" if datatype == "FP32" else "image_uint8"
    tensor = httpclient.InferInput(name, list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels.astype(np.float32 if datatype == "FP32" else np.uint8), binary_data=binary)
    output = httpclient.InferRequestedOutput("probabilities", binary_data=binary)
    result = triton.infer("cifar10", [tensor], outputs=[output], request_id="request-7")
    np.testing.assert_allclose(result.as_numpy("probabilities"), _expected(classifier, pixels), atol=1e-5)
    assert result.get_response()["id"] == "request-7"


def test_tritonclient_default_asks_for_binary_outputs(triton, classifier, dataset):
    pixels = _pixels(dataset, 2)
    tensor = httpclient.InferInput("image", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels.astype(np.float32))
    result = triton.infer("cifar10", [tensor], model_version="1")
    assert result.get_output("probabilities")["parameters"]["binary_data_size"] == 2 * 4 * len(classifier.class_names)
    np.testing.assert_allclose(result.as_numpy("probabilities"), _expected(classifier, pixels), atol=1e-5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary BYTES", "base64 in JSON"])
def test_image_files_of_any_size_as_bytes(triton, classifier, dataset, binary):
    big = np.asarray(Image.fromarray(dataset.x_test[0]).resize((97, 61)))
    buffer = io.BytesIO()
    Image.fromarray(dataset.x_test[1]).save(buffer, "JPEG", quality=90)
    files = [png_bytes(big), buffer.getvalue()]
    tensor = httpclient.InferInput("image_bytes", [2], "BYTES")
    elements = files if binary else [base64.b64encode(content).decode() for content in files]
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_), binary_data=binary)
    result = triton.infer("cifar10", [tensor])
    decoded = inputs.decode_images([("a", files[0]), ("b", files[1])], (32, 32), ServeLimits(), float("inf"))
    np.testing.assert_allclose(result.as_numpy("probabilities"), _expected(classifier, decoded), atol=1e-5)


def test_tritonclient_sees_the_servers_error(triton, dataset):
    from tritonclient.utils import InferenceServerException

    tensor = httpclient.InferInput("image", [1, 16, 16, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        triton.infer("cifar10", [tensor])
    with pytest.raises(InferenceServerException, match="unknown model"):
        triton.get_model_metadata("another")
    assert triton.is_server_live()


# ---------------------------------------------------------------- bad bodies, in-process

def _binary_body(header: dict, data: bytes) -> dict:
    encoded = json.dumps(header).encode()
    return {"content": encoded + data, "headers": {"Inference-Header-Content-Length": str(len(encoded))}}


def _pixel_input(shape=(1, 32, 32, 3), datatype="FP32", name="image", **extra):
    return {"name": name, "datatype": datatype, "shape": list(shape), **extra}


ONE_IMAGE = np.full((1, 32, 32, 3), 100, np.float32)
BAD_BODIES = {
    "not JSON": ({"content": b"{nope"}, 400, "JSON Parse error"),
    "no inputs": ({"json": {"id": "x"}}, 400, '"inputs"'),
    "two inputs": ({"json": {"inputs": [_pixel_input(data=[0]), _pixel_input(data=[0])]}}, 400, "one tensor"),
    "unknown input": ({"json": {"inputs": [_pixel_input(name="pixels", data=[0])]}}, 400, "unknown input"),
    "wrong datatype": ({"json": {"inputs": [_pixel_input(datatype="INT64", data=[0])]}}, 400, "is FP32"),
    "wrong shape": ({"json": {"inputs": [_pixel_input(shape=(1, 16, 16, 3), data=[0] * 768)]}}, 400, "shape"),
    "shape of strings": ({"json": {"inputs": [_pixel_input(shape=["1", 32, 32, 3], data=[0])]}}, 400, "shape"),
    "data short of its shape": ({"json": {"inputs": [_pixel_input(data=[1.0] * 100)]}}, 400, "3072 numbers"),
    "data of strings": ({"json": {"inputs": [_pixel_input(data=["a"] * 3072)]}}, 400, "values"),
    "pixels out of range": ({"json": {"inputs": [_pixel_input(data=[300.0] * 3072)]}}, 400, "0-255"),
    "UINT8 fractions": ({"json": {"inputs": [_pixel_input(name="image_uint8", datatype="UINT8",
                                                          data=[1.5] * 3072)]}}, 400, "whole numbers"),
    "too many images": ({"json": {"inputs": [_pixel_input(shape=(9, 32, 32, 3), data=[0] * 9 * 3072)]}}, 400,
                        "from 1 to 8"),
    "binary size that lies": (_binary_body({"inputs": [_pixel_input(parameters={"binary_data_size": 999})]},
                                           ONE_IMAGE.tobytes()), 400, "binary_data_size"),
    "binary short of its shape": (_binary_body({"inputs": [_pixel_input(parameters={"binary_data_size": 400})]},
                                               b"\0" * 400), 400, "bytes of binary data"),
    "header length past the body": ({"content": b'{"inputs": []}', "headers": {
        "Inference-Header-Content-Length": "5000"}}, 400, "Inference-Header-Content-Length"),
    "header length not a number": ({"content": b'{"inputs": []}', "headers": {
        "Inference-Header-Content-Length": "-3"}}, 400, "Inference-Header-Content-Length"),
    "binary data nobody claims": (_binary_body({"inputs": [_pixel_input(data=[0] * 3072)]}, b"\0" * 10), 400,
                                  "no input says"),
    "BYTES element past the end": (_binary_body({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                                             "parameters": {"binary_data_size": 8}}]},
                                                struct.pack("<I", 1000) + b"abcd"), 400, "past the end"),
    "BYTES count off its shape": (_binary_body({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [2],
                                                            "parameters": {"binary_data_size": 8}}]},
                                               struct.pack("<I", 4) + b"abcd"), 400, "1 elements for shape [2]"),
    "BYTES not an image": (_binary_body({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                                     "parameters": {"binary_data_size": 8}}]},
                                        struct.pack("<I", 4) + b"abcd"), 400, "image_bytes[0]"),
    "JSON BYTES not base64": ({"json": {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                                    "data": ["%%%"]}]}}, 400, "base64"),
    "unknown output": ({"json": {"inputs": [_pixel_input(data=[0] * 3072)], "outputs": [{"name": "logits"}]}}, 400,
                       "unknown output"),
    "id not a string": ({"json": {"id": 5, "inputs": [_pixel_input(data=[0] * 3072)]}}, 400, '"id"'),
    "compressed body": ({"content": b"\x1f\x8b", "headers": {"Content-Encoding": "gzip"}}, 415, "Content-Encoding"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_bad_infer_body_is_a_json_error(case, classifier):
    app = create_app(classifier, "cifar10", ServeLimits(max_instances=8))
    options, status, fragment = BAD_BODIES[case]
    assert_error(request(app, "POST", INFER, **options), status, fragment)
    assert request(app, "GET", "/v2/health/live").json() == {"live": True}


@pytest.mark.parametrize("path", ["/v2/models/another/infer", "/v2/models/cifar10/versions/2/infer"])
def test_unknown_model_or_version_is_404(app, path):
    assert_error(request(app, "POST", path, json={"inputs": [_pixel_input(data=[0] * 3072)]}), 404, "unknown model")
    assert request(app, "GET", path.removesuffix("/infer") + "/ready").status_code == 404


def test_every_limit_applies_to_infer(classifier):
    app = create_app(classifier, "cifar10", ServeLimits(max_body_mb=1))
    body = _binary_body({"inputs": [_pixel_input(shape=(100, 32, 32, 3), parameters={
        "binary_data_size": 100 * 3072 * 4})]}, np.zeros((100, 32, 32, 3), np.float32).tobytes())
    assert_error(request(app, "POST", INFER, **body), 413, "over the limit")
    bomb = Image.new("L", (12_000, 12_000))
    buffer = io.BytesIO()
    bomb.save(buffer, "PNG")
    header = {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                          "parameters": {"binary_data_size": 4 + len(buffer.getvalue())}}]}
    files = struct.pack("<I", len(buffer.getvalue())) + buffer.getvalue()
    assert_error(request(app, "POST", INFER, **_binary_body(header, files)), 413, "pixels")


def test_binary_answer_is_a_json_header_then_float32s(app, classifier, dataset):
    pixels = dataset.x_test[:2].astype(np.float32)
    header = {"id": "7", "inputs": [_pixel_input(shape=pixels.shape, parameters={"binary_data_size": pixels.nbytes})],
              "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
    response = request(app, "POST", INFER, **_binary_body(header, pixels.tobytes()))
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    document = json.loads(response.content[:length])
    assert document["id"] == "7" and document["model_version"] == "1"
    values = np.frombuffer(response.content[length:], "<f4").reshape(document["outputs"][0]["shape"])
    np.testing.assert_allclose(values, _expected(classifier, pixels), atol=1e-5)


# ---------------------------------------------------------------- KServe's own SDK client (offline: REST only)

def test_kserve_rest_client_speaks_v2_and_v1(live_server, classifier, dataset):
    kserve = pytest.importorskip("kserve")
    import asyncio

    pixels = _pixels(dataset, 2).astype(np.float32)

    async def calls():
        async with kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", timeout=30)) as client:
            assert await client.is_server_live(live_server) and await client.is_server_ready(live_server)
            assert await client.is_model_ready(live_server, "cifar10")
            tensor = kserve.InferInput(name="image", shape=list(pixels.shape), datatype="FP32")
            tensor.set_data_from_numpy(pixels, binary_data=True)
            request_v2 = kserve.InferRequest(model_name="cifar10", infer_inputs=[tensor], request_id="k-1")
            answer_v2 = await client.infer(live_server, request_v2, model_name="cifar10")
        async with kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v1", timeout=30)) as client:
            answer_v1 = await client.infer(live_server, {"instances": pixels.tolist()}, model_name="cifar10")
        return answer_v2, answer_v1

    answer_v2, answer_v1 = asyncio.run(calls())
    expected = _expected(classifier, pixels)
    assert answer_v2.id == "k-1" and answer_v2.outputs[0].name == "probabilities"
    np.testing.assert_allclose(answer_v2.outputs[0].as_numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(answer_v1["predictions"], expected, atol=1e-5)
