"""The explain verb (KServe v1's `:explain`, TorchServe's `explanations`): the predictions, plus where the model
looked for each image (a Grad-CAM heatmap, `models.gradcam`), as an H x W array and as a PNG data URL of the
heatmap over the image. `POST /v1/models/NAME:explain` takes `:predict`'s body; `POST /explain` the page's
upload. A backward pass costs ~2x a forward one and holds its gradients, so explanations have their own, lower
limit of concurrent requests (`max_concurrent_explain`; a few more wait, the rest get 503): a burst of them
cannot starve predictions."""

import asyncio
import threading
import time

import numpy as np
from starlette.requests import Request

from imagerec.evaluation import explain, predict
from imagerec.serve import admission, dataplane, inputs, tf_serving
from imagerec.serve.limits import DEADLINE_KEY, RequestError, deadline_error

_BUILD_LOCK = threading.Lock()
WAITING_PER_SLOT = 8  # explanations that may wait for each slot; more are 503


def setup(app, limits) -> None:
    """The app's explanation state: its slots, and the explainer built on first use."""
    # The server's own admission, smaller: `max_concurrent_explain` at work, WAITING_PER_SLOT a slot queued.
    app.state.explain_admission = admission.Admission(limits.max_concurrent_explain,
                                                      WAITING_PER_SLOT * limits.max_concurrent_explain)
    app.state.explainer = None


async def explain_v1(request: Request, model_name: str, version: str | None = None):
    tf_serving.check_model(request, model_name, version)
    body, deadline = await request.body(), request.scope[DEADLINE_KEY]
    batch, key = await tf_serving.predict_batch(request.app.state, body, deadline)
    probabilities, explanations = await _explained(request, batch)
    return {key: probabilities.tolist(), "explanations": explanations}


async def explain_upload(request: Request):
    """The page's upload, as `/predict` takes it, answered with its top labels and an explanation per image."""
    state = request.app.state
    contents, top_k = await inputs.read_upload(request)
    images = await dataplane.decode(state, contents, request.scope[DEADLINE_KEY])
    probabilities, explanations = await _explained(request, images.astype(np.float32))
    return {"model": state.model_name, "predictions": [
        {"filename": filename, "top": predict.top_k_labels(row, state.classifier.class_names, top_k), **explained}
        for (filename, _), row, explained in zip(contents, probabilities, explanations)]}


async def _explained(request: Request, batch: np.ndarray):
    """(probabilities, [{"label", "heatmap", "overlay"}]) of a float32 batch, within an explanation slot and the
    request's deadline."""
    state = request.app.state
    if state.classifier.keras_model is None:
        raise RequestError(501, f"this model ({state.classifier.format}) cannot explain: serve a run directory or "
                                f"a .keras/.h5 file, whose graph Grad-CAM takes gradients of")
    async with state.explain_admission.slot(request.scope[DEADLINE_KEY]):
        probabilities = await dataplane.infer(state, batch, request.scope[DEADLINE_KEY])
        classes = probabilities.argmax(axis=1)
        try:
            maps = await asyncio.wait_for(dataplane.in_worker(state, lambda: _explainer(state)(batch, classes)),
                                          _remaining(request))
        except asyncio.TimeoutError:
            raise deadline_error("explanation") from None
    names = state.classifier.class_names
    pixels = np.clip(batch, 0, 255).astype(np.uint8)
    return probabilities, [{"label": names[index], "heatmap": np.round(heatmap, 4).tolist(),
                            "overlay": explain.data_url(explain.enlarged(explain.overlay(image, heatmap)))}
                           for index, image, heatmap in zip(classes, pixels, maps)]


def _remaining(request: Request) -> float:
    return max(0.0, request.scope[DEADLINE_KEY] - time.monotonic())


def _explainer(state):
    """The app's GradCam, built once (on a worker thread: it builds Keras models)."""
    with _BUILD_LOCK:
        if state.explainer is None:
            state.explainer = explain.explainer(state.classifier)
    return state.explainer


ROUTES = (
    ("POST", "/explain", explain_upload),
    ("POST", "/v1/models/{model_name}:explain", explain_v1),
    ("POST", "/v1/models/{model_name}/versions/{version}:explain", explain_v1),
)
