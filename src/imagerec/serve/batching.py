"""Dynamic batching: concurrent requests' images run through the model as one batch, on one model thread."""

import asyncio
import concurrent.futures
import time

import numpy as np


EXACT_SIZES = 32  # batch sizes up to this run unpadded (each warmed up at start); larger ones are padded


class Batcher:
    """Queue of pending image batches, run through `predict` on one worker thread, merged when possible.

    Hand-written because neither FastAPI nor Keras batches concurrent requests (TF Serving's batcher is C++
    inside its own server). `predict` maps float32 (N, H, W, C) to (N, K); each caller gets its own rows back.
    """

    def __init__(self, predict, max_batch_size: int, window_s: float, batching: bool = True, observer=None):
        self._predict = predict
        self._observer = observer  # observer(sizes, waits_s, inference_s) after each model call (metrics)
        self._max_batch_size = max_batch_size
        self._window_s = window_s
        self._batching = batching
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagerec-model")
        self._loop = self._queue = self._worker = None
        self.batch_sizes = []  # images per model call, for tests and benchmarks (last 1,000)

    async def predict(self, images: np.ndarray) -> np.ndarray:
        self._start_on_this_loop()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((images, future, time.perf_counter()))
        return await future

    def _start_on_this_loop(self) -> None:
        # Test clients may run each request on a new event loop; a queue belongs to one loop.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            pending = [await self._queue.get()]
            if self._batching:
                await self._gather_more(pending)
            pending = [item for item in pending if not item[1].done()]  # those not timed out
            if pending:
                await self._run_batch(pending)

    async def _gather_more(self, pending: list) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window_s
        count = len(pending[0][0])
        while count < self._max_batch_size:
            try:
                item = self._queue.get_nowait()  # arrived while the model was busy: no waiting needed
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    return
            pending.append(item)
            count += len(item[0])

    def bucket_sizes(self) -> list:
        """The batch shapes the model ever sees: every size up to EXACT_SIZES, then powers of two, then the max."""
        sizes = list(range(1, min(EXACT_SIZES, self._max_batch_size) + 1))
        while sizes[-1] < self._max_batch_size:
            sizes.append(min(2 * sizes[-1], self._max_batch_size))
        return sizes

    def predict_padded(self, batch: np.ndarray) -> np.ndarray:
        """`predict` over chunks of at most max_batch_size, each zero-padded up to a bucket size.

        oneDNN builds and caches kernels per input shape: a batch size seen for the first time paid that cost
        mid-request (p95 latency 3x p50 at 32 clients). Keeping the shapes few, and warming each at start,
        removes it; padding small batches to powers of two instead wasted up to half of each model call.
        """
        outputs = []
        for start in range(0, len(batch), self._max_batch_size):
            chunk = batch[start:start + self._max_batch_size]
            size = next(bucket for bucket in self.bucket_sizes() if bucket >= len(chunk))
            padding = np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)
            outputs.append(np.asarray(self._predict(np.concatenate([chunk, padding])))[:len(chunk)])
        return np.concatenate(outputs)

    def warm_up(self, input_shape) -> None:
        """Run every bucket size once, so no request pays for building its kernels."""
        for size in self.bucket_sizes():
            self._predict(np.zeros((size, *input_shape), np.float32))

    async def _run_batch(self, pending: list) -> None:
        batch = np.concatenate([images for images, _, _ in pending])
        self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
        started = time.perf_counter()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.predict_padded, batch)
        except Exception as error:  # noqa: BLE001 - handed to each waiting request, which answers 500
            for _, future, _ in pending:
                if not future.done():
                    future.set_exception(error)
            return
        if self._observer is not None:
            self._observer([len(images) for images, _, _ in pending], [started - queued for _, _, queued in pending],
                           time.perf_counter() - started)
        start = 0
        for images, future, _ in pending:
            if not future.done():
                future.set_result(outputs[start:start + len(images)])
            start += len(images)
