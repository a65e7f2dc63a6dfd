"""The protocol-neutral data plane every protocol's routes share (kserve's split): work on a worker thread, image
files decoded and counted, and the batcher's probabilities within the request's deadline. Each function takes the
app's state (`app.state`: classifier, limits, batcher, workers, metrics) and the request's deadline, so the HTTP
routes and the gRPC servicers call the same code."""

import asyncio
import time

import numpy as np

from imagerec.serve import inputs
from imagerec.serve.limits import deadline_error


async def in_worker(state, work):
    """`work()` on one of the app's worker threads (parsing, decoding), off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(state.workers, work)


async def decode(state, contents: list, deadline: float) -> np.ndarray:
    """Image files [(name, bytes)] → uint8 (N, H, W, 3) at the model's size, on a worker thread."""
    return await in_worker(state, lambda: inputs.decode_images(
        contents, state.classifier.input_shape[:2], state.limits, deadline, state.metrics.images_decoded.inc))


async def infer(state, images: np.ndarray, deadline: float) -> np.ndarray:
    """The batcher's probabilities for `images`, within `deadline` (time.monotonic()) (504)."""
    try:
        return await asyncio.wait_for(state.batcher.predict(images), max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        raise deadline_error("inference") from None
