"""TensorFlow Serving's gRPC API (`tensorflow_serving.apis`), on `imagerec serve --grpc-port`: PredictionService's
Predict and GetModelMetadata, ModelService's GetModelStatus; the others answer UNIMPLEMENTED (the generated base
classes' answer). It runs on the HTTP server's event loop (grpc.aio), so both protocols share one data plane: the
work slots and queue, the body budget, the batcher, the deadline, the metrics. Refusals become gRPC status
codes; a message over `--max-body-mb` is refused by gRPC itself (RESOURCE_EXHAUSTED)."""

import logging
import time

import numpy as np

from imagerec.errors import UserError
from imagerec.serve import dataplane, inputs, tensor_protos
from imagerec.serve.limits import RequestError

LOGGER = logging.getLogger("imagerec.serve")
OUTPUT_KEY = "output_0"  # the output's key, as in the SavedModel's signature and the REST metadata
SIGNATURE = "serving_default"
# RequestError's HTTP status → the gRPC status TF Serving would give
GRPC_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 413: "RESOURCE_EXHAUSTED",
               415: "INVALID_ARGUMENT", 501: "UNIMPLEMENTED", 503: "RESOURCE_EXHAUSTED", 504: "DEADLINE_EXCEEDED"}


async def start(state, host: str, port: int):
    """A started grpc.aio server for the app's `state` on host:port (call on the running event loop)."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    limits = state.limits
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limits.max_body_bytes),
                                      ("grpc.max_send_message_length", limits.max_body_bytes)],
                             # calls beyond the slots and the queue are refused by gRPC (RESOURCE_EXHAUSTED)
                             maximum_concurrent_rpcs=limits.max_concurrent + limits.max_queue)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_prediction_service(state), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_model_service(state), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise UserError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    return server


async def answer(state, method: str, context, work):
    """`await work()`, with a RequestError (or anything unexpected) turned into its gRPC status, and counted."""
    import grpc

    started, code = time.perf_counter(), "OK"
    try:
        return await work()
    except RequestError as error:
        code = GRPC_STATUS.get(error.status, "INTERNAL")
        message = error.message
    except Exception:  # noqa: BLE001 - logged; the client gets INTERNAL, never a traceback
        LOGGER.exception("unexpected error in gRPC %s", method)
        code, message = "INTERNAL", "internal error (logged on the server)"
    finally:
        state.metrics.answered(f"grpc:{method}", code, started)
    await context.abort(getattr(grpc.StatusCode, code), message)


def deadline_of(state, context) -> float:
    """The request's deadline on time.monotonic(): `--timeout-s`, or the client's own deadline if sooner."""
    remaining = context.time_remaining()
    return time.monotonic() + min(state.limits.timeout_s, remaining if remaining is not None else float("inf"))


def check_spec(state, spec, signature: bool = True) -> None:
    """NOT_FOUND for another model's name or version; INVALID_ARGUMENT for another signature."""
    choice = spec.WhichOneof("version_choice")
    if spec.name != state.model_name or (choice == "version" and spec.version.value != 1) or (
            choice == "version_label"):
        version = {"version": f", {spec.version.value}", "version_label": f", {spec.version_label!r}"}.get(choice, "")
        raise RequestError(404, f"Servable not found for request: "
                                f"{'Latest' if choice is None else 'Specific'}({spec.name[:64]}{version[:40]})")
    if signature and spec.signature_name not in ("", SIGNATURE):
        raise RequestError(400, f'Serving signature key "{spec.signature_name[:64]}" not found.')


async def predict(state, request, context):
    """PredictRequest → PredictResponse within the slots, the body budget and the deadline."""
    from tensorflow_serving.apis import predict_pb2

    deadline, size = deadline_of(state, context), request.ByteSize()
    state.metrics.bytes_received.inc(size)
    check_spec(state, request.model_spec)
    if set(request.output_filter) - {OUTPUT_KEY}:
        raise RequestError(400, f"output_filter {sorted(request.output_filter)[:4]}: this model's output is "
                                f"{OUTPUT_KEY!r}")
    with state.budget.holding() as reserve:
        reserve(size)
        async with state.admission.slot(deadline):
            batch = await _batch(state, request, deadline)
            probabilities = await dataplane.infer(state, batch, deadline)
    response = predict_pb2.PredictResponse()
    response.model_spec.name, response.model_spec.signature_name = state.model_name, SIGNATURE
    response.model_spec.version.value = 1
    response.outputs[OUTPUT_KEY].CopyFrom(tensor_protos.array_to_tensor(probabilities))
    return response


async def _batch(state, request, deadline: float) -> np.ndarray:
    """The request's one input → float32 (N, H, W, 3): pixels (any number type), or DT_STRING image files."""
    name, input_shape, limits = state.input_name, tuple(state.classifier.input_shape), state.limits
    if set(request.inputs) != {name}:
        raise RequestError(400, f"inputs {sorted(request.inputs)[:4]}: this model has one input, {name!r}")
    tensor = request.inputs[name]
    value = await dataplane.in_worker(state, lambda: tensor_protos.tensor_to_array(
        tensor, name, limits.max_instances * int(np.prod(input_shape))))
    files = isinstance(value, list)  # DT_STRING: image files, shape [N]
    shape, item_shape = ([len(value)], ()) if files else (list(value.shape), input_shape)
    if len(shape) != 1 + len(item_shape) or tuple(shape[1:]) != item_shape:
        expected = "[N]" if files else f"[N, {', '.join(map(str, input_shape))}]"
        raise RequestError(400, f"input {name!r} has shape {shape}; this model takes {expected}")
    if not 1 <= shape[0] <= limits.max_instances:
        raise RequestError(400, f"input {name!r} has {shape[0]} images; from 1 to {limits.max_instances} are taken")
    if files:
        contents = [(f"{name}[{index}]", content) for index, content in enumerate(value)]
        return (await dataplane.decode(state, contents, deadline)).astype(np.float32)
    return await dataplane.in_worker(state, lambda: inputs.checked_pixels(value, f"input {name!r}"))


async def model_metadata(state, request, context):
    from tensorflow_serving.apis import get_model_metadata_pb2

    check_spec(state, request.model_spec, signature=False)
    if list(request.metadata_field) != ["signature_def"]:
        raise RequestError(400, f"metadata_field {list(request.metadata_field)[:4]}: only ['signature_def'] is "
                                "supported")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = state.model_name
    response.model_spec.version.value = 1
    response.metadata["signature_def"].Pack(_signature_defs(state))
    return response


def _signature_defs(state):
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    def info(name: str, dims) -> meta_graph_pb2.TensorInfo:
        shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size)
                                                       for size in dims])
        return meta_graph_pb2.TensorInfo(name=name, dtype=tensor_protos.DT_FLOAT, tensor_shape=shape)

    signature = meta_graph_pb2.SignatureDef(
        inputs={state.input_name: info(f"serving_default_{state.input_name}:0", [-1, *state.classifier.input_shape])},
        outputs={OUTPUT_KEY: info("StatefulPartitionedCall:0", [-1, len(state.classifier.class_names)])},
        method_name="tensorflow/serving/predict")
    return get_model_metadata_pb2.SignatureDefMap(signature_def={SIGNATURE: signature})


async def model_status(state, request, context):
    from tensorflow_serving.apis import get_model_status_pb2

    check_spec(state, request.model_spec, signature=False)
    response = get_model_status_pb2.GetModelStatusResponse()
    response.model_version_status.add(version=1, state=get_model_status_pb2.ModelVersionStatus.State.AVAILABLE)
    return response


def _prediction_service(state):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):  # noqa: N802 - the RPC's name
            return await answer(state, "Predict", context, lambda: predict(state, request, context))

        async def GetModelMetadata(self, request, context):  # noqa: N802
            return await answer(state, "GetModelMetadata", context, lambda: model_metadata(state, request, context))

    return PredictionService()


def _model_service(state):
    from tensorflow_serving.apis import model_service_pb2_grpc

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        async def GetModelStatus(self, request, context):  # noqa: N802
            return await answer(state, "GetModelStatus", context, lambda: model_status(state, request, context))

    return ModelService()
