"""The protocol-neutral data plane every protocol's routes share (kserve's split): work on a worker thread, and
the batcher's probabilities within the request's deadline."""

import asyncio
import time

import numpy as np

from imagerec.serve.limits import DEADLINE_KEY, deadline_error


async def in_worker(request, work):
    """`work()` on one of the app's worker threads (parsing, decoding), off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(request.app.state.workers, work)


async def infer(request, images: np.ndarray) -> np.ndarray:
    """The batcher's probabilities for `images`, within the request's deadline (504)."""
    deadline = request.scope[DEADLINE_KEY]
    try:
        return await asyncio.wait_for(request.app.state.batcher.predict(images), max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        raise deadline_error("inference") from None
