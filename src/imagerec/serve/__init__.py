"""Serving: a loaded model behind a web page, a JSON API, TensorFlow Serving's REST and gRPC APIs and the Open
Inference Protocol v2 (KServe, Triton).

    limits      `ServeLimits` and `RequestError` (no server package: the CLI reads its flags from here)
    batching    concurrent requests' images as one model call      admission   work slots, queue, body budget
    metrics     `ServeMetrics`: the counters /metrics exports (prometheus_client)
    guard       the ASGI guard: framing, body deadline and size, slots, the request's deadline, request metrics
    inputs      image files and TF Serving documents → pixel batches   dataplane   worker threads, decoding, inference
    v2_tensors  Open Inference Protocol bodies (JSON, Triton's binary tensors) ↔ pixels and probabilities
    tensor_protos  TensorProto ↔ numpy within the limits (the gRPC API's tensors)
    app         `create_app`: the page, /predict, /metrics, errors as JSON   tf_serving  TF Serving's REST routes
    open_inference  the Open Inference Protocol v2 routes      tf_serving_grpc  TF Serving's gRPC API (grpc.aio)
    explain     `:explain` and the page's /explain: predictions with Grad-CAM heatmaps, its own slots
    server      `run_server`: uvicorn with a header deadline, gRPC beside it; `check_address_free`

Only `imagerec serve` imports FastAPI, Starlette, uvicorn, h11 and grpc (through `app` and `server`). The names
below are importable from `imagerec.serve` itself, as before the package had rooms; each loads its module on first
use.
"""

from imagerec import lazy

_EXPORTS = {
    "ServeLimits": "limits", "RequestError": "limits", "RETRY_AFTER_S": "limits", "MAX_HEADER_BYTES": "limits",
    "DEADLINE_KEY": "limits", "Batcher": "batching", "EXACT_SIZES": "batching", "Admission": "admission",
    "BodyBudget": "admission", "RequestGuard": "guard", "MIN_BODY_RATE_BYTES_S": "guard",
    "decode_images": "inputs", "parse_json_body": "inputs", "predict_body_to_batch": "inputs",
    "instances_to_batch": "inputs", "model_status": "tf_serving", "model_metadata": "tf_serving",
    "ServeMetrics": "metrics", "parse_infer_request": "v2_tensors", "tensor_to_array": "tensor_protos",
    "create_app": "app", "PAGE_FILE": "app", "PAGE_TOP_K": "app", "ROUTES": "app", "run_server": "server",
    "header_deadline_protocol": "server", "HeaderDeadlineProtocol": "server", "check_address_free": "server",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy.exports(__name__, _EXPORTS)
