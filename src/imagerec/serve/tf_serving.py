"""TensorFlow Serving's REST API (v1): its routes as a small table over the data plane, and its status and
metadata documents. Model NAME, version 1 (or none)."""

from starlette.requests import Request

from imagerec.serve import dataplane, inputs
from imagerec.serve.limits import DEADLINE_KEY, RequestError


def model_status(version: str = "1") -> dict:
    return {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def model_metadata(name: str, classifier, input_name: str, version: str = "1") -> dict:
    def tensor(dims):
        return {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": str(size), "name": ""} for size in dims],
                                                      "unknown_rank": False}}

    signature = {"inputs": {input_name: {**tensor([-1, *classifier.input_shape]),
                                         "name": f"serving_default_{input_name}:0"}},
                 "outputs": {"output_0": {**tensor([-1, len(classifier.class_names)]),
                                          "name": "StatefulPartitionedCall:0"}},
                 "method_name": "tensorflow/serving/predict"}
    return {"model_spec": {"name": name, "signature_name": "", "version": version},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
            "class_names": list(classifier.class_names)}  # not in TF Serving: what each output means


async def predict(request: Request, model_name: str, version: str | None = None):
    check_model(request, model_name, version)
    state, body, deadline = request.app.state, await request.body(), request.scope[DEADLINE_KEY]
    batch, key = await predict_batch(state, body, deadline)
    return json_response({key: await dataplane.infer(state, batch, deadline)})


async def predict_batch(state, body: bytes, deadline: float) -> tuple:
    """A predict body → (float32 batch, response key), parsed and decoded off the event loop (a 16 MB body is
    0.2 s of parsing: in a worker process)."""
    batch, key, decoded = await dataplane.parse(state, inputs.parse_predict_body, body, state.input_name,
                                                tuple(state.classifier.input_shape), state.limits, deadline)
    state.metrics.images_decoded.inc(decoded)
    return batch, key


def json_response(document: dict):
    """`document` as JSON, its numpy arrays written by orjson (a 256 x 10 answer: no Python floats on the way)."""
    import orjson
    from starlette.responses import Response

    return Response(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


async def status(request: Request, model_name: str, version: str | None = None):
    return model_status(_check_get(request, model_name, version))


async def metadata(request: Request, model_name: str, version: str | None = None):
    state = request.app.state
    return model_metadata(state.model_name, state.classifier, state.input_name,
                          _check_get(request, model_name, version))


def check_model(request, model_name: str, version: str | None = None) -> str:
    """The version served ("1"); 404 for another model's name or version."""
    if model_name != request.app.state.model_name or version not in (None, "1"):
        raise RequestError(404, f"Servable not found for request: "
                                f"{'Latest' if version is None else 'Specific'}({model_name}"
                                f"{'' if version is None else ', ' + version})")
    return version or "1"


def _check_get(request, model_name: str, version: str | None) -> str:
    if ":" in (version or model_name):  # GET /v1/models/NAME:predict: the route exists for POST only
        raise RequestError(405, f"method GET not allowed here: {(version or model_name).split(':')[-1]} takes POST")
    return check_model(request, model_name, version)


ROUTES = (
    ("POST", "/v1/models/{model_name}:predict", predict),
    ("POST", "/v1/models/{model_name}/versions/{version}:predict", predict),
    ("GET", "/v1/models/{model_name}", status), ("GET", "/v1/models/{model_name}/versions/{version}", status),
    ("GET", "/v1/models/{model_name}/metadata", metadata),
    ("GET", "/v1/models/{model_name}/versions/{version}/metadata", metadata),
)
