"""A prediction service for a loaded model: a web page, a JSON API and TensorFlow Serving's REST API.

Routes (every error is JSON `{"error": "..."}`, with TensorFlow Serving's status codes):
  GET  /                                    page: drop or choose images, see each one's top-5 labels
  POST /predict?top_k=5                     multipart upload of one or more images (any format, any size)
  GET  /v1/models/NAME[/versions/1]         TF Serving model status
  GET  /v1/models/NAME[/versions/1]/metadata  TF Serving signature (input shape, dtype) plus class names
  POST /v1/models/NAME[/versions/1]:predict   {"instances": [...]} or {"inputs": [...]}: H x W x 3 pixel
                                            arrays (0-255) or {"b64": "<image file, base64>"}
  GET  /healthz

The model runs on one dedicated thread, never on the event loop; requests that arrive while it is busy (or
within a short window) are concatenated into one batch, so throughput grows with load (`Batcher`). JSON
parsing and image decoding run in a small pool of worker threads, also off the event loop.

Limits (`ServeLimits`) guard memory and time, in the order a request meets them:
  1. its request line and headers, then its body, must arrive within `read_timeout_s` (408; the body's time
     grows by 1 s per 100 kB received): a slow client holds a connection, never a slot
     (`header_deadline_protocol`, `RequestGuard`); headers over MAX_HEADER_BYTES, or a body framed both by
     Transfer-Encoding and Content-Length, are 400 and close the connection;
  2. the body size is enforced on the bytes actually received (a chunked body has no Content-Length) (413),
     and the bytes all requests hold at once against `max_pending_mb` (`BodyBudget`, 503);
  3. only a complete request takes one of `max_concurrent` work slots; over that it waits in a queue of
     `max_queue` (`Admission`), and only a full queue answers 503 with Retry-After;
  4. one deadline, `timeout_s` from the request's arrival, covers reading, parsing, decoding, queueing and
     inference (504); image dimensions are checked from the headers, each image against `max_image_pixels`
     and their decoding work (`data.decode_work`: a JPEG's scans count) against `max_request_pixels`, before
     any pixel is decoded (413).
"""

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import contextlib
import dataclasses
import gc
import json
import logging
import math
import re
import secrets
import time
from pathlib import Path

import h11
import numpy as np
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

from imagerec import data, predict
from imagerec.errors import UserError

LOGGER = logging.getLogger("imagerec.serve")
PAGE_FILE = Path(__file__).with_name("serve_page.html")
PAGE_TOP_K = 5  # labels the page shows per image, and /predict gives without top_k


def _limit(default, help_text: str, maximum):
    """A ServeLimits field; `help_text` is what `imagerec serve --help` says of it (the CLI derives its flags);
    `maximum` keeps a typo from asking for the impossible (a 10^9-image batch is warmed up forever)."""
    return dataclasses.field(default=default, metadata={"help": help_text, "maximum": maximum})


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the server; every field is an `imagerec serve` option (--max-body-mb ...)."""

    max_body_mb: float = _limit(16.0, "largest request body in MiB, counted as received (413)", 1024)
    max_pending_mb: float = _limit(256.0, "request bodies held at once in MiB, arriving, queued or being handled; "
                                          "a body that would go over it gets 503 + Retry-After", 65536)
    max_image_pixels: int = _limit(40_000_000, "largest image, width x height, read from its header before "
                                               "decoding (413)", 2**31)
    # A JPEG counts at the reduced scale it is decoded at, plus an eighth of its full size per scan
    # (data.decode_work); the default is ~0.5 s of one core's decoding here.
    max_request_pixels: int = _limit(64_000_000, "pixels decoded for one request, summed over its images, "
                                                 "checked before decoding (413)", 2**34)
    max_images: int = _limit(32, "files in one /predict upload (400)", 4096)
    max_instances: int = _limit(256, "instances in one TF Serving request (400)", 65536)
    max_concurrent: int = _limit(64, "complete requests being parsed, decoded or run at once; more wait in the "
                                     "queue", 4096)
    max_queue: int = _limit(512, "requests waiting for a work slot; one more gets 503 + Retry-After", 65536)
    timeout_s: float = _limit(30.0, "deadline of a request from its arrival: body, parsing, decoding, queue and "
                                    "inference (504)", 3600)
    read_timeout_s: float = _limit(10.0, "time for a request's headers, and then for its body, to arrive; the "
                                         "body's grows by 1 s per 100 kB received (408)", 3600)
    keep_alive_s: float = _limit(5.0, "an idle keep-alive connection is closed after this", 3600)
    max_connections: int = _limit(1024, "open connections; requests beyond get 503", 65536)
    workers: int = _limit(2, "threads that parse JSON and decode images (each holds one request's work)", 256)
    # 0 measured best here (BENCHMARKS.md): batches form from requests that queued while the model was busy.
    batch_window_ms: float = _limit(0.0, "how long a batch waits for more requests; 0: only those already "
                                         "queued while the model was busy", 10_000)
    max_batch_size: int = _limit(32, "images per model call (on 2 CPU cores throughput is flat beyond 32)", 1024)
    batching: bool = _limit(True, "batch concurrent requests into one model call (off: each on its own, "
                                  "for comparison)", None)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, maximum = getattr(self, field.name), field.metadata["maximum"]
            if isinstance(value, bool):
                continue
            low_ok = value >= 0 if field.name == "batch_window_ms" else value > 0
            if not (math.isfinite(value) and low_ok and value <= maximum):
                raise UserError(f"serve limit `{field.name}` must be a positive number up to {maximum:,}, got "
                                f"{value}")
        if self.max_pending_mb < self.max_body_mb:
            raise UserError(f"serve limit `max_pending_mb` ({self.max_pending_mb:g}) must be at least "
                            f"`max_body_mb` ({self.max_body_mb:g}): one whole body must fit")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def max_pending_bytes(self) -> int:
        return int(self.max_pending_mb * 2**20)


class RequestError(Exception):
    """A request the server refuses: becomes `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


RETRY_AFTER_S = 1  # what a 503 asks a client to wait: the queue drains in well under a second at full load


# ---------------------------------------------------------------- batching

EXACT_SIZES = 32  # batch sizes up to this run unpadded (each warmed up at start); larger ones are padded


class Batcher:
    """Queue of pending image batches, run through `predict` on one worker thread, merged when possible.

    Hand-written because neither FastAPI nor Keras batches concurrent requests (TF Serving's batcher is C++
    inside its own server). `predict` maps float32 (N, H, W, C) to (N, K); each caller gets its own rows back.
    """

    def __init__(self, predict, max_batch_size: int, window_s: float, batching: bool = True):
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._window_s = window_s
        self._batching = batching
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagerec-model")
        self._loop = self._queue = self._worker = None
        self.batch_sizes = []  # images per model call, for tests and benchmarks (last 1,000)

    async def predict(self, images: np.ndarray) -> np.ndarray:
        self._start_on_this_loop()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((images, future))
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
            pending = [(images, future) for images, future in pending if not future.done()]  # timed out
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
        batch = np.concatenate([images for images, _ in pending])
        self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.predict_padded, batch)
        except Exception as error:  # noqa: BLE001 - handed to each waiting request, which answers 500
            for _, future in pending:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for images, future in pending:
            if not future.done():
                future.set_result(outputs[start:start + len(images)])
            start += len(images)


# ---------------------------------------------------------------- admission: work slots and a bounded queue

class Admission:
    """At most `slots` requests do work at once; up to `queue_size` more wait in arrival order.

    Like TF Serving's batch queue and Triton's `max_queue_size`: a burst waits instead of being refused, and
    only a full queue is turned away (503 + Retry-After). A waiting request gives up at its deadline (504).
    Hand-written because asyncio.Semaphore belongs to one event loop and cannot say how many wait.
    """

    def __init__(self, slots: int, queue_size: int):
        self.slots, self.queue_size = slots, queue_size
        self.active = 0
        self._waiting = collections.deque()  # futures of queued requests, oldest first

    @property
    def waiting(self) -> int:
        return sum(not future.done() for future in self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float):
        """Hold a work slot inside the block; RequestError 503 (queue full) or 504 (deadline passed)."""
        if self.active < self.slots and not self.waiting:
            self.active += 1
        else:
            await self._wait(deadline)
        try:
            yield
        finally:
            self._release()

    async def _wait(self, deadline: float) -> None:
        if self.waiting >= self.queue_size:
            raise RequestError(503, f"server busy: {self.slots} requests at work and {self.queue_size} queued; "
                                    f"retry later", {"retry-after": str(RETRY_AFTER_S)})
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            if self._leave(future):
                raise _deadline_error("waiting for a work slot") from None
        except BaseException:  # cancelled: the client left, or the request's deadline passed
            if not self._leave(future):
                self._release()
            raise

    @staticmethod
    def _leave(future) -> bool:
        """Leave the queue; False when a slot was already handed to this request (it now holds one)."""
        if future.done():
            return False
        future.cancel()
        return True

    def _release(self) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)  # the slot passes straight to the oldest waiting request
                return
        self.active -= 1


def _deadline_error(stage: str) -> "RequestError":
    return RequestError(504, f"the request did not finish within its deadline ({stage})")


# ---------------------------------------------------------------- input parsing (no web framework here)

def decode_images(contents: list, image_size, limits: ServeLimits, deadline: float) -> np.ndarray:
    """Image files [(name, bytes)] → uint8 (N, H, W, 3), for a worker thread.

    Every header is read first: one image over max_image_pixels, or all of them together over
    max_request_pixels, is refused (413) before any pixel is decoded; past `deadline` (time.monotonic())
    decoding stops between images (504). Unreadable files are 400.
    """
    total = 0
    for name, content in contents:
        total += _image_call(data.decode_work, content, name, image_size, limits.max_image_pixels)
    if total > limits.max_request_pixels:
        raise RequestError(413, f"the request's images add up to {total:,} pixels to decode, over the limit of "
                                f"{limits.max_request_pixels:,}")
    images = []
    for name, content in contents:
        if time.monotonic() > deadline:
            raise _deadline_error("decoding images")
        images.append(_image_call(data.decode_image, content, name, image_size, limits.max_image_pixels))
    return np.stack(images)


def _image_call(function, content: bytes, name: str, image_size, max_pixels: int):
    if not content:
        raise RequestError(400, f"{name}: empty file")
    try:
        return function(content, image_size, max_pixels=max_pixels)
    except data.ImageTooLargeError as error:
        raise RequestError(413, f"{name}: {error}") from None
    except data.ImageDecodeError as error:
        raise RequestError(400, f"{name}: {error}") from None


def parse_json_body(body: bytes):
    """JSON → Python; RequestError 400 for anything that is not valid JSON (including absurd nesting)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise RequestError(400, "JSON Parse error: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"JSON Parse error: {str(error)[:200]}") from None


def predict_body_to_batch(body: bytes, input_name: str, input_shape, limits: ServeLimits, deadline: float):
    """A TF Serving predict body (bytes) → (float32 batch, response key); all the work, for a worker thread."""
    return instances_to_batch(parse_json_body(body), input_name, input_shape, limits, deadline)


def instances_to_batch(request: dict, input_name: str, input_shape, limits: ServeLimits,
                       deadline: float = float("inf")):
    """A TF Serving predict body → (float32 (N, H, W, C) batch, "predictions" or "outputs").

    Accepts the row format {"instances": [...]} and the columnar {"inputs": [...]}; each instance is an
    H x W x 3 array of numbers in 0-255, {"b64": base64 image file} (any size; resized), or either of them
    under the model's input name ({input_name: ...}). Image files are decoded as `decode_images` does.
    """
    if not isinstance(request, dict):
        raise RequestError(400, 'the body must be a JSON object with "instances" or "inputs"')
    signature = request.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise RequestError(400, f"Serving signature name: \"{signature}\" not found in signature def")
    if ("instances" in request) == ("inputs" in request):
        raise RequestError(400, 'the body must have exactly one of "instances" or "inputs"')
    key = "instances" if "instances" in request else "inputs"
    instances = request[key]
    if isinstance(instances, dict) and key == "inputs":
        instances = _unwrap_named(instances, input_name)
    if not isinstance(instances, list):
        raise RequestError(400, f'"{key}" must be a list of images')
    if not instances:
        raise RequestError(400, f'"{key}" is empty')
    if len(instances) > limits.max_instances:
        raise RequestError(400, f'"{key}" has {len(instances)} images; the limit is {limits.max_instances}')
    images = [_instance_to_image(_unwrap_named(item, input_name), index, input_shape)
              for index, item in enumerate(instances)]
    files = [(f"instance {index}", image) for index, image in enumerate(images) if isinstance(image, bytes)]
    decoded = iter(decode_images(files, input_shape[:2], limits, deadline) if files else [])
    images = [next(decoded) if isinstance(image, bytes) else image for image in images]
    return np.stack(images).astype(np.float32), ("predictions" if key == "instances" else "outputs")


def _unwrap_named(item, input_name: str):
    if isinstance(item, dict) and "b64" not in item:
        if set(item) != {input_name}:
            raise RequestError(400, f"unknown input(s) {sorted(item)[:5]}; this model has one input, "
                                    f"\"{input_name}\"")
        return item[input_name]
    return item


def _instance_to_image(item, index: int, input_shape):
    """An instance → float32 pixels (H, W, C), or the bytes of an image file still to decode."""
    if isinstance(item, dict):
        if set(item) != {"b64"} or not isinstance(item["b64"], str):
            raise RequestError(400, f'instance {index}: expected {{"b64": "<base64 image>"}}')
        try:
            return base64.b64decode(item["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, f"instance {index}: b64 is not valid base64") from None
    try:
        pixels = np.asarray(item)
    except (ValueError, TypeError):  # ragged nesting, or deeper than numpy's 64 dimensions
        raise RequestError(400, f"instance {index}: not a rectangular array of numbers") from None
    if pixels.dtype.kind not in "iuf":
        raise RequestError(400, f"instance {index}: pixels must be numbers (got {_describe_dtype(pixels)})")
    if pixels.shape != tuple(input_shape):
        raise RequestError(400, f"instance {index}: shape {list(pixels.shape)} does not match the model's input "
                                f"{list(input_shape)} (height, width, channels)")
    pixels = pixels.astype(np.float64)
    if not np.isfinite(pixels).all():
        raise RequestError(400, f"instance {index}: pixels must be finite (NaN or Infinity found)")
    if pixels.min() < 0 or pixels.max() > 255:
        raise RequestError(400, f"instance {index}: pixels must be in 0-255")
    return pixels.astype(np.float32)


def _describe_dtype(array: np.ndarray) -> str:
    return {"b": "booleans", "U": "strings", "S": "strings", "O": "mixed values"}.get(array.dtype.kind,
                                                                                     str(array.dtype))


# ---------------------------------------------------------------- TF Serving's status and metadata documents

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


# ---------------------------------------------------------------- the ASGI guard and the app

DEADLINE_KEY = "imagerec.deadline"  # in the ASGI scope: the request's deadline, on time.monotonic()'s clock
MIN_BODY_RATE_BYTES_S = 100_000  # each 100 kB of body received extends its read deadline by 1 s


class RequestGuard:
    """ASGI middleware, before any route runs: the framing checks (a body framed twice, headers over
    MAX_HEADER_BYTES: 400), the body's read deadline (408) and size limit (413) and the server-wide budget of
    body bytes held (`BodyBudget`, 503), then a work slot (`Admission`), all within the request's deadline (504).

    Starlette has no global body limit, and a chunked upload has no Content-Length to check, so the body is
    read here, counted as it arrives, and replayed to the app only when it is complete and fits. Nothing
    counts against the concurrency cap until then: a client that sends its body slowly holds no slot.
    """

    def __init__(self, app, limits: ServeLimits):
        self.app = app
        self.limits = limits
        self.admission = Admission(limits.max_concurrent, limits.max_queue)
        self.budget = BodyBudget(limits.max_pending_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _ResponseTracker(_with_server_timing(send, time.perf_counter()))
        deadline = time.monotonic() + self.limits.timeout_s
        scope[DEADLINE_KEY] = deadline
        try:
            _check_framing(scope)
            if scope["method"] not in ("POST", "PUT", "PATCH"):
                return await self.app(scope, receive, send)
            with self.budget.holding() as reserve:
                body = await self._read_body(scope, receive, time.monotonic() + self.limits.read_timeout_s,
                                             reserve)
                async with self.admission.slot(deadline):
                    await asyncio.wait_for(self.app(scope, _replay(body), send),
                                           max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            if not send.started:
                await _send_error(send, _deadline_error("while it was handled"))
        except RequestError as error:
            if not send.started:
                await _send_error(send, error)
        except _ClientGone:
            pass

    async def _read_body(self, scope, receive, read_deadline: float, reserve) -> bytes:
        limit = self.limits.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and not (declared.isdigit() and declared.isascii()):
            raise RequestError(400, "invalid Content-Length")
        if declared is not None and int(declared) > limit:
            raise RequestError(413, f"request body over the limit of {limit} bytes")
        reserve(int(declared or 0))  # the whole declared body at once: refused before it is read
        chunks, size = [], 0
        while True:
            # Like Apache's mod_reqtimeout (body=10,MinRate=...): the deadline moves on with every byte that
            # arrives at the minimum rate, so a large body on a busy server is not cut off, while a client that
            # drips gains nothing. The request's own deadline still bounds it (then 504, as for any other stage).
            extended = read_deadline + size / MIN_BODY_RATE_BYTES_S
            try:
                message = await asyncio.wait_for(receive(), max(0.0, min(extended, scope[DEADLINE_KEY])
                                                                - time.monotonic()))
            except asyncio.TimeoutError:
                if extended >= scope[DEADLINE_KEY]:
                    raise _deadline_error("reading the body") from None
                raise RequestError(408, f"the request body did not arrive within {self.limits.read_timeout_s:g} s "
                                        f"(plus 1 s per {MIN_BODY_RATE_BYTES_S // 1000} kB received)",
                                   {"connection": "close"}) from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            size += len(message.get("body", b""))
            if size > limit:
                raise RequestError(413, f"request body over the limit of {limit} bytes")
            reserve(size)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


def _header(scope, name: bytes):
    return dict(scope.get("headers") or []).get(name)


def _check_framing(scope) -> None:
    """RequestError 400 for a request that can be read two ways, or whose headers are over MAX_HEADER_BYTES.

    RFC 9112 section 6.1: a message with both Transfer-Encoding and Content-Length "ought to be handled as an
    error" (h11 follows the chunked framing, and a proxy in front may follow the other: request smuggling);
    the error closes the connection, so nothing pipelined behind it is read. h11 bounds only headers that
    arrive in pieces; a block that arrives whole is measured here.
    """
    names = [name for name, _ in scope.get("headers") or []]
    if b"transfer-encoding" in names and b"content-length" in names:
        raise RequestError(400, "the request has both Transfer-Encoding and Content-Length", {"connection": "close"})
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(
        len(name) + len(value) + 4 for name, value in scope.get("headers") or [])
    if size > MAX_HEADER_BYTES:
        raise RequestError(400, f"request line and headers over the limit of {MAX_HEADER_BYTES // 1024} KiB",
                           {"connection": "close"})


class BodyBudget:
    """The request-body bytes the server holds at once, over all requests: arriving, queued or being handled.

    Each request's bytes stay counted until its answer is sent (its body, and what is parsed from it, live that
    long). A request that would take the total over the budget is refused 503 + Retry-After: 190 clients each
    sending 15.5 MiB had grown the server by 3.8 GB.
    """

    def __init__(self, budget_bytes: int):
        self.budget_bytes, self.held_bytes = budget_bytes, 0

    @contextlib.contextmanager
    def holding(self):
        """A `reserve(size)` function for one request: it now holds `size` bytes (only ever more); RequestError 503
        when that does not fit. All of it is freed on exit."""
        held = 0

        def reserve(size: int) -> None:
            nonlocal held
            if size <= held:
                return
            if self.held_bytes + size - held > self.budget_bytes:
                raise RequestError(503, f"server busy: request bodies already hold {self.held_bytes / 2**20:.0f} "
                                        f"of {self.budget_bytes / 2**20:.0f} MiB; retry later",
                                   # kept open: uvicorn then reads and drops the rest of the body (holding none
                                   # of it), and the client gets this answer instead of a reset mid-upload
                                   {"retry-after": str(RETRY_AFTER_S), "connection": "keep-alive"})
            self.held_bytes += size - held
            held = size

        try:
            yield reserve
        finally:
            self.held_bytes -= held


class _ClientGone(Exception):
    """The client disconnected before its request was complete: nobody to answer."""


class _ResponseTracker:
    """An ASGI send that remembers whether the response has started (after which no error can be sent)."""

    def __init__(self, send):
        self._send, self.started = send, False

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _with_server_timing(send, started: float):
    """Add `Server-Timing: app;dur=<ms>` (the W3C header browsers' dev tools show): time spent in the server."""
    async def send_with_timing(message):
        if message["type"] == "http.response.start":
            duration_ms = 1000 * (time.perf_counter() - started)
            headers = [*message.get("headers", []), (b"server-timing", f"app;dur={duration_ms:.2f}".encode())]
            message = {**message, "headers": headers}
        await send(message)

    return send_with_timing


def _replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # like a real client that sent everything: no more messages
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send_error(send, error: RequestError) -> None:
    body = json.dumps({"error": error.message}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close",
               **error.headers}
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(name.encode(), value.encode()) for name, value in headers.items()]})
    await send({"type": "http.response.body", "body": body})


def create_app(classifier, name: str = "cifar10", limits: ServeLimits | None = None):
    """The FastAPI app serving `classifier` (an imagerec Classifier) as model `name`.

    The routes below are plain functions that find the classifier, limits, batcher and worker threads in
    `request.app.state`; RequestGuard wraps them all.
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from imagerec import models  # here, not above: `imagerec serve --help` needs ServeLimits, not Keras

    limits = limits or ServeLimits()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise UserError(f"`name` is letters, digits, '_', '.' and '-' (up to 64), got {name!r}")
    app = FastAPI(title=f"imagerec: {name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.classifier, app.state.model_name, app.state.limits = classifier, name, limits
    app.state.input_name = models.INPUT_NAME  # the TF Serving input key, as in the saved SavedModel
    app.state.batcher = Batcher(classifier.predict_proba, limits.max_batch_size, limits.batch_window_ms / 1000,
                                limits.batching)
    # JSON parsing and decoding hold the GIL for long stretches: a few threads bound how many requests do it at
    # once (and the memory their parsed bodies take), and keep the event loop free for everyone else.
    app.state.workers = concurrent.futures.ThreadPoolExecutor(max_workers=limits.workers,
                                                              thread_name_prefix="imagerec-parse")
    # Read once. The page shows the top 5 labels, or every class of a model with fewer (top_k is at most that).
    app.state.page = PAGE_FILE.read_text(encoding="utf-8").replace("{{MODEL}}", _html(name)).replace(
        "{{TOP_K}}", str(min(PAGE_TOP_K, len(classifier.class_names))))
    app.add_middleware(RequestGuard, limits=limits)
    for error_type, handler in ((RequestError, _request_error), (HTTPException, _http_error),
                                (RequestValidationError, _validation_error), (Exception, _unexpected_error)):
        app.add_exception_handler(error_type, handler)
    for method, path, route in ROUTES:
        app.add_api_route(path, route, methods=[method], response_model=None)
    return app


# ---------------------------------------------------------------- the routes

async def _page(request: Request):
    from fastapi.responses import HTMLResponse

    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(request.app.state.page.replace("{{NONCE}}", nonce), headers={"Content-Security-Policy": (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")})


async def _healthz(request: Request):
    return {"status": "ok", "model": request.app.state.model_name}


async def _predict_upload(request: Request):
    state = request.app.state
    classifier, limits, deadline = state.classifier, state.limits, request.scope[DEADLINE_KEY]
    default_top_k = str(min(PAGE_TOP_K, len(classifier.class_names)))  # 5, or every class of a smaller model
    top_k = _parse_top_k(request.query_params.get("top_k", default_top_k), len(classifier.class_names))
    form = await request.form(max_files=limits.max_images, max_fields=limits.max_images)
    uploads = [(key, value) for key, value in form.multi_items() if not isinstance(value, str)]
    if not uploads:
        raise RequestError(400, "no image in the request: POST multipart/form-data with one or more files")
    contents = [(upload.filename or key, await upload.read()) for key, upload in uploads]
    images = await _in_worker(request, lambda: decode_images(contents, classifier.input_shape[:2], limits, deadline))
    probabilities = await _infer(request, images.astype(np.float32))
    return {"model": state.model_name, "predictions": [
        {"filename": filename, "top": predict.top_k_labels(row, classifier.class_names, top_k)}
        for (filename, _), row in zip(contents, probabilities)]}


async def _tf_predict(request: Request, model_name: str, version: str | None = None):
    _check_model(request, model_name, version)
    state, body, deadline = request.app.state, await request.body(), request.scope[DEADLINE_KEY]
    batch, key = await _in_worker(request, lambda: predict_body_to_batch(  # a 16 MB body: ~0.4 s of parsing
        body, state.input_name, state.classifier.input_shape, state.limits, deadline))
    return {key: (await _infer(request, batch)).tolist()}


async def _tf_status(request: Request, model_name: str, version: str | None = None):
    return model_status(_check_get(request, model_name, version))


async def _tf_metadata(request: Request, model_name: str, version: str | None = None):
    state = request.app.state
    return model_metadata(state.model_name, state.classifier, state.input_name,
                          _check_get(request, model_name, version))


ROUTES = (
    ("GET", "/", _page), ("GET", "/healthz", _healthz), ("POST", "/predict", _predict_upload),
    ("POST", "/v1/models/{model_name}:predict", _tf_predict),
    ("POST", "/v1/models/{model_name}/versions/{version}:predict", _tf_predict),
    ("GET", "/v1/models/{model_name}", _tf_status), ("GET", "/v1/models/{model_name}/versions/{version}", _tf_status),
    ("GET", "/v1/models/{model_name}/metadata", _tf_metadata),
    ("GET", "/v1/models/{model_name}/versions/{version}/metadata", _tf_metadata),
)


async def _in_worker(request, work):
    return await asyncio.get_running_loop().run_in_executor(request.app.state.workers, work)


async def _infer(request, images: np.ndarray) -> np.ndarray:
    """The batcher's probabilities for `images`, within the request's deadline (504)."""
    deadline = request.scope[DEADLINE_KEY]
    try:
        return await asyncio.wait_for(request.app.state.batcher.predict(images), max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        raise _deadline_error("inference") from None


def _check_model(request, model_name: str, version: str | None = None) -> str:
    if model_name != request.app.state.model_name or version not in (None, "1"):
        raise RequestError(404, f"Servable not found for request: "
                                f"{'Latest' if version is None else 'Specific'}({model_name}"
                                f"{'' if version is None else ', ' + version})")
    return version or "1"


def _check_get(request, model_name: str, version: str | None) -> str:
    if ":" in (version or model_name):  # GET /v1/models/NAME:predict: the route exists for POST only
        raise RequestError(405, f"method GET not allowed here: {(version or model_name).split(':')[-1]} takes POST")
    return _check_model(request, model_name, version)


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


def _parse_top_k(text: str, num_classes: int) -> int:
    # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and "١" or "５" (which it takes).
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= num_classes:
        raise RequestError(400, f"top_k must be a whole number from 1 to {num_classes}, got {text[:20]!r}")
    return int(text)


def _html(text: str) -> str:
    import html

    return html.escape(text, quote=True)


MAX_HEADER_BYTES = 16 * 1024  # request line + headers; more is 400 (h11's incomplete-event limit)


def run_server(classifier, host: str = "127.0.0.1", port: int = 8500, name: str = "cifar10",
               limits: ServeLimits | None = None) -> None:
    """Run the service until interrupted (uvicorn, one process; the model on its own thread)."""
    import uvicorn

    limits = limits or ServeLimits()
    app = create_app(classifier, name, limits)
    app.state.batcher.warm_up(classifier.input_shape)
    # TensorFlow and the model leave ~400,000 Python objects that every full garbage collection would walk
    # (~160 ms here, stalling all requests: it was the p95 latency). Freeze them out of the collector.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False,
                http=header_deadline_protocol(limits.read_timeout_s), timeout_keep_alive=limits.keep_alive_s,
                limit_concurrency=limits.max_connections, h11_max_incomplete_event_size=MAX_HEADER_BYTES)


def header_deadline_protocol(read_timeout_s: float):
    """uvicorn's h11 protocol class with a `read_timeout_s` deadline on each request's line and headers."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"read_timeout_s": read_timeout_s})


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's request line and headers.

    uvicorn closes idle keep-alive connections, but has no deadline for a request whose headers never finish:
    a client that sends half a request line, or drips one byte at a time (slowloris), holds its connection
    forever. Here a connection has `read_timeout_s` from its opening, or from its previous response, until its
    next request's headers are complete; then it is answered 408 and closed. The body's deadline is
    RequestGuard's.
    """

    read_timeout_s = ServeLimits().read_timeout_s
    _header_timer = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_header_deadline()

    def handle_events(self):
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete
            self._disarm_header_deadline()

    def on_response_complete(self):
        self._arm_header_deadline()  # for the next request on this keep-alive connection
        super().on_response_complete()

    def connection_lost(self, exc):
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self):
        self._disarm_header_deadline()
        self._header_timer = self.loop.call_later(self.read_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self):
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def send_400_response(self, msg: str):
        """uvicorn's answer to what h11 cannot parse (a malformed request, headers over MAX_HEADER_BYTES as they
        arrive), as JSON like every other error."""
        body = json.dumps({"error": f"invalid HTTP request: malformed, or its headers over "
                                    f"{MAX_HEADER_BYTES // 1024} KiB"}).encode()
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    def _headers_too_slow(self):
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a request came: say why it is cut off
            body = json.dumps({"error": f"the request's headers did not arrive within {self.read_timeout_s:g} s"})
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body.encode()))
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()


def check_address_free(host: str, port: int) -> None:
    """UserError when this process cannot listen on host:port (a name that does not resolve, a busy port)."""
    import socket

    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UserError(f"`port` must be a port number from 1 to 65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UserError(f"cannot listen on {host}: {error.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
