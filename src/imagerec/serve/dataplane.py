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


async def parse(state, work, body: bytes, *arguments, json_bytes: int | None = None):
    """`work(body, *arguments)` (a module-level function), on a worker thread, or in a worker process when the
    body's JSON (`json_bytes`, all of it by default) is over `parse_process_mb`: a JSON parser holds the GIL for
    its whole call, so a 16 MB body parsed on a thread stalls the event loop, and every request on it, for a
    fifth of a second."""
    if (len(body) if json_bytes is None else json_bytes) <= state.limits.parse_process_bytes:
        return await in_worker(state, lambda: work(body, *arguments))
    return await asyncio.get_running_loop().run_in_executor(_processes(state), work, body, *arguments)


PARSER_NICENESS = 10  # the parsing processes yield the cores to the event loop and the model


def _processes(state):
    """The app's parsing processes, started on first use (spawned: TensorFlow's threads do not survive a fork;
    a child imports only numpy, orjson and Pillow), at a lower CPU priority: on 2 cores, two parsers, the model's
    threads and the event loop compete, and the event loop's short turns are what every other request waits on."""
    if getattr(state, "processes", None) is None:
        import concurrent.futures
        import multiprocessing
        import os

        state.processes = concurrent.futures.ProcessPoolExecutor(
            max_workers=state.limits.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=os.nice, initargs=(PARSER_NICENESS,))
    return state.processes


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
