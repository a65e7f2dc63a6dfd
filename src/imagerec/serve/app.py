"""The app: a prediction service for a loaded model, a web page, a JSON API and TensorFlow Serving's REST API
(`tf_serving`), built in steps over the shared data plane (`dataplane`); `server` runs it.

Routes (every error is JSON `{"error": "..."}`, with TensorFlow Serving's status codes):
  GET  /                                    page: drop or choose images, see each one's top-5 labels
  POST /predict?top_k=5                     multipart upload of one or more images (any format, any size), or
                                            one image file as the body (Content-Type image/... or octet-stream)
  GET  /v1/models/NAME[/versions/1]         TF Serving model status
  GET  /v1/models/NAME[/versions/1]/metadata  TF Serving signature (input shape, dtype) plus class names
  POST /v1/models/NAME[/versions/1]:predict   {"instances": [...]} or {"inputs": [...]}: H x W x 3 pixel
                                            arrays (0-255) or {"b64": "<image file, base64>"}
  POST /v1/models/NAME[/versions/1]:explain   :predict's body; the predictions and, per image, where the model
                                            looked (Grad-CAM: an H x W heatmap, its overlay as a PNG data URL)
  POST /explain?top_k=5                     /predict's upload, answered with an explanation per image
  GET  /healthz
  GET  /metrics                             Prometheus' text format (`metrics`)
  GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/1][/ready]   Open Inference Protocol v2
  POST /v2/models/NAME[/versions/1]/infer   JSON tensors, Triton's binary tensors, image files (`open_inference`)

The model runs on one dedicated thread, never on the event loop; requests that arrive while it is busy (or
within a short window) are concatenated into one batch, so throughput grows with load (`batching`). JSON
parsing and image decoding run in a small pool of worker threads, also off the event loop.

Limits (`ServeLimits`) guard memory and time, in the order a request meets them:
  1. its request line and headers, then its body, must arrive within `read_timeout_s` (408; the body's time
     grows by 1 s per 100 kB received): a slow client holds a connection, never a slot
     (`server.header_deadline_protocol`, `guard.RequestGuard`); headers over MAX_HEADER_BYTES, or a body framed both by
     Transfer-Encoding and Content-Length, are 400 and close the connection;
  2. the body size is enforced on the bytes actually received (a chunked body has no Content-Length) (413),
     and the bytes all requests hold at once against `max_pending_mb` (`admission.BodyBudget`, 503);
  3. only a complete request takes one of `max_concurrent` work slots; over that it waits in a queue of
     `max_queue` (`admission.Admission`), and only a full queue answers 503 with Retry-After;
  4. one deadline, `timeout_s` from the request's arrival, covers reading, parsing, decoding, queueing and
     inference (504); image dimensions are checked from the headers, each image against `max_image_pixels`
     and their decoding work (`data.images.decode_work`: a JPEG's scans count) against `max_request_pixels`, before
     any pixel is decoded (413).
"""

import concurrent.futures
import logging
import re
import secrets
from pathlib import Path

import numpy as np
from starlette.requests import Request

from imagerec.errors import UserError
from imagerec.evaluation import predict
from imagerec.models.registry import INPUT_NAME
from imagerec.serve import dataplane, explain, inputs, metrics, open_inference, tf_serving
from imagerec.serve.admission import Admission, BodyBudget
from imagerec.serve.batching import Batcher
from imagerec.serve.guard import RequestGuard
from imagerec.serve.limits import DEADLINE_KEY, RequestError, ServeLimits

LOGGER = logging.getLogger("imagerec.serve")
PAGE_FILE = Path(__file__).with_name("page.html")
PAGE_TOP_K = inputs.PAGE_TOP_K


def create_app(classifier, name: str = "cifar10", limits: ServeLimits | None = None):
    """The FastAPI app serving `classifier` (an imagerec Classifier) as model `name`, built in steps (as kserve
    builds its server): its state, the guard around every route, the JSON errors, the routes.

    The routes are plain functions that find the classifier, limits, batcher and worker threads in
    `request.app.state`; RequestGuard wraps them all.
    """
    from fastapi import FastAPI

    limits = limits or ServeLimits()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise UserError(f"`name` is letters, digits, '_', '.' and '-' (up to 64), got {name!r}")
    app = FastAPI(title=f"imagerec: {name}", docs_url=None, redoc_url=None, openapi_url=None)
    _set_state(app, classifier, name, limits)
    app.add_middleware(RequestGuard, limits=limits, admission=app.state.admission, budget=app.state.budget,
                       metrics=app.state.metrics, route_of=lambda scope: _route_label(app, scope))
    _add_error_handlers(app)
    for method, path, route in ROUTES:
        app.add_api_route(path, route, methods=[method], response_model=None)
    return app


def _set_state(app, classifier, name: str, limits: ServeLimits) -> None:
    app.state.classifier, app.state.model_name, app.state.limits = classifier, name, limits
    app.state.input_name = INPUT_NAME  # the TF Serving input key, as in the saved SavedModel
    # Every protocol (the HTTP routes, the gRPC API) shares the slots, the body budget, the batcher, the metrics.
    app.state.admission = Admission(limits.max_concurrent, limits.max_queue)
    app.state.budget = BodyBudget(limits.max_pending_bytes)
    app.state.metrics = metrics.ServeMetrics(app.state.admission)
    app.state.batcher = Batcher(classifier.predict_proba, limits.max_batch_size, limits.batch_window_ms / 1000,
                                limits.batching, observer=app.state.metrics.batch_run)
    # JSON parsing and decoding hold the GIL for long stretches: a few threads bound how many requests do it at
    # once (and the memory their parsed bodies take), and keep the event loop free for everyone else.
    explain.setup(app, limits)
    app.state.workers = concurrent.futures.ThreadPoolExecutor(max_workers=limits.workers,
                                                              thread_name_prefix="imagerec-parse")
    # Read once. The page shows the top 5 labels, or every class of a model with fewer (top_k is at most that).
    app.state.page = PAGE_FILE.read_text(encoding="utf-8").replace("{{MODEL}}", _html(name)).replace(
        "{{TOP_K}}", str(min(PAGE_TOP_K, len(classifier.class_names))))


def _add_error_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    for error_type, handler in ((RequestError, _request_error), (HTTPException, _http_error),
                                (RequestValidationError, _validation_error), (Exception, _unexpected_error)):
        app.add_exception_handler(error_type, handler)


# ---------------------------------------------------------------- the routes

async def _page(request: Request):
    from fastapi.responses import HTMLResponse

    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(request.app.state.page.replace("{{NONCE}}", nonce), headers={"Content-Security-Policy": (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")})


async def _healthz(request: Request):
    return {"status": "ok", "model": request.app.state.model_name}


async def _metrics(request: Request):
    from starlette.responses import Response

    return Response(request.app.state.metrics.exposition(), media_type=metrics.CONTENT_TYPE)


async def _predict_upload(request: Request):
    state = request.app.state
    classifier, deadline = state.classifier, request.scope[DEADLINE_KEY]
    contents, top_k = await inputs.read_upload(request)
    images = await dataplane.decode(state, contents, deadline)
    probabilities = await dataplane.infer(state, images.astype(np.float32), deadline)
    return {"model": state.model_name, "predictions": [
        {"filename": filename, "top": predict.top_k_labels(row, classifier.class_names, top_k)}
        for (filename, _), row in zip(contents, probabilities)]}


ROUTES = (("GET", "/", _page), ("GET", "/healthz", _healthz), ("GET", "/metrics", _metrics),
          ("POST", "/predict", _predict_upload), *tf_serving.ROUTES, *open_inference.ROUTES, *explain.ROUTES)


def _route_label(app, scope) -> str:
    """The route a request went to, as its path template (a bounded set of labels), or "unmatched"."""
    from starlette.routing import Match

    route = scope.get("route")  # FastAPI records the route it ran
    if route is None:  # refused before routing (413, 408, ...): find the route it was for
        route = next((candidate for candidate in app.router.routes
                      if candidate.matches(scope)[0] != Match.NONE), None)
    return getattr(route, "path", "unmatched")


# ---------------------------------------------------------------- errors as JSON

async def _request_error(request, error: RequestError):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)


async def _http_error(request, error):
    from fastapi.responses import JSONResponse

    message = {404: f"no route {request.url.path}", 405: f"method {request.method} not allowed here"}.get(
        error.status_code, str(error.detail))
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


async def _validation_error(request, error):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": "invalid request parameters"}, status_code=400)


async def _unexpected_error(request, error: Exception):
    from fastapi.responses import JSONResponse

    LOGGER.exception("unexpected error serving %s", request.url.path)
    return JSONResponse({"error": "internal error (logged on the server)"}, status_code=500)


def _html(text: str) -> str:
    import html

    return html.escape(text, quote=True)
