"""The Open Inference Protocol v2 REST routes (KServe's and Triton's `/v2/...`), a table over the data plane as
`tf_serving` is: health, server and model metadata, readiness, and `infer` with JSON tensors, Triton's binary
tensor data extension and a BYTES input of image files (`v2_tensors`). Model NAME, version 1 (or none)."""

from starlette.requests import Request
from starlette.responses import Response

from imagerec.serve import dataplane, v2_tensors
from imagerec.serve.limits import DEADLINE_KEY, RequestError

SERVER_NAME = "imagerec"
EXTENSIONS = ["binary_tensor_data"]


async def server_metadata(request: Request):
    from importlib import metadata

    return {"name": SERVER_NAME, "version": metadata.version("imagerec"), "extensions": EXTENSIONS}


async def live(request: Request):
    return {"live": True}


async def ready(request: Request):
    return {"ready": True}  # the model is loaded and warmed up before the server listens


async def model_metadata(request: Request, model_name: str, version: str | None = None):
    _check_model(request, model_name, version)
    state = request.app.state
    pixels = [-1, *state.classifier.input_shape]
    return {"name": state.model_name, "versions": ["1"], "platform": f"imagerec_{state.classifier.format}",
            "inputs": [*({"name": name, "datatype": datatype, "shape": pixels}
                         for name, datatype in v2_tensors.PIXEL_INPUTS.items()),
                       {"name": v2_tensors.FILE_INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": v2_tensors.OUTPUT, "datatype": "FP32",
                         "shape": [-1, len(state.classifier.class_names)]}],
            "parameters": {"class_names": list(state.classifier.class_names)}}


async def model_ready(request: Request, model_name: str, version: str | None = None):
    _check_model(request, model_name, version)
    return {"name": request.app.state.model_name, "ready": True}


async def infer(request: Request, model_name: str, version: str | None = None):
    _check_model(request, model_name, version)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":  # a compressed body would escape the body-size limit (a zip bomb)
        raise RequestError(415, f"Content-Encoding {encoding[:20]!r} is not accepted; send the body uncompressed")
    state, body, deadline = request.app.state, await request.body(), request.scope[DEADLINE_KEY]
    header_length = request.headers.get(v2_tensors.HEADER_LENGTH)
    json_bytes = len(body) if header_length is None else (
        int(header_length) if header_length.isascii() and header_length.isdigit() else 0)
    parsed = await dataplane.parse(state, v2_tensors.parse_infer_request, body, header_length,
                                   tuple(state.classifier.input_shape), state.limits, json_bytes=json_bytes)
    pixels = parsed.pixels if parsed.files is None else await dataplane.decode(state, parsed.files, deadline)
    probabilities = await dataplane.infer(state, pixels.astype("float32", copy=False), deadline)
    content, headers = v2_tensors.infer_response(state.model_name, parsed, probabilities)
    return Response(content, headers=headers)


def _check_model(request: Request, model_name: str, version: str | None) -> None:
    if model_name != request.app.state.model_name:
        raise RequestError(404, f"Request for unknown model: '{model_name[:64]}' is not found")
    if version not in (None, "1"):
        raise RequestError(404, f"Request for unknown model: '{model_name}' version {version[:16]} is not found")


ROUTES = (
    ("GET", "/v2", server_metadata), ("GET", "/v2/health/live", live), ("GET", "/v2/health/ready", ready),
    ("GET", "/v2/models/{model_name}", model_metadata),
    ("GET", "/v2/models/{model_name}/versions/{version}", model_metadata),
    ("GET", "/v2/models/{model_name}/ready", model_ready),
    ("GET", "/v2/models/{model_name}/versions/{version}/ready", model_ready),
    ("POST", "/v2/models/{model_name}/infer", infer),
    ("POST", "/v2/models/{model_name}/versions/{version}/infer", infer),
)
