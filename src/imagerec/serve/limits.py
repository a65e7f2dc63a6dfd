"""What one request may ask of the server (`ServeLimits`, every field an `imagerec serve` option) and how a refusal
is said (`RequestError`). No server package is imported here: the CLI builds its flags from this module alone."""

import dataclasses
import math

from imagerec.errors import UserError

DEADLINE_KEY = "imagerec.deadline"  # in the ASGI scope: the request's deadline, on time.monotonic()'s clock
MAX_HEADER_BYTES = 16 * 1024  # request line + headers; more is 400 (h11's incomplete-event limit)


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
    max_concurrent_explain: int = _limit(2, "explanations (Grad-CAM: a forward and a backward pass each) computed "
                                            "at once; 8 more per slot wait, beyond that 503 + Retry-After", 256)
    max_queue: int = _limit(512, "requests waiting for a work slot; one more gets 503 + Retry-After", 65536)
    timeout_s: float = _limit(30.0, "deadline of a request from its arrival: body, parsing, decoding, queue and "
                                    "inference (504)", 3600)
    read_timeout_s: float = _limit(10.0, "time for a request's headers, and then for its body, to arrive; the "
                                         "body's grows by 1 s per 100 kB received (408)", 3600)
    keep_alive_s: float = _limit(5.0, "an idle keep-alive connection is closed after this", 3600)
    max_connections: int = _limit(1024, "open connections; requests beyond get 503", 65536)
    workers: int = _limit(2, "threads that parse JSON and decode images (each holds one request's work), and "
                             "processes that parse large JSON bodies", 256)
    # A JSON parser holds the GIL for its whole call (0.18 s for 15.9 MB with orjson): the event loop, and so
    # every other request, waits behind it. Large bodies are parsed in worker processes instead.
    parse_process_mb: float = _limit(1.0, "JSON bodies over this many MiB are parsed in worker processes, off "
                                          "the event loop's GIL (smaller ones on the worker threads)", 1024)
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
    def parse_process_bytes(self) -> int:
        return int(self.parse_process_mb * 2**20)

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

    def __reduce__(self):  # raised in a parsing process, re-raised in the server whole
        return RequestError, (self.status, self.message, self.headers)


RETRY_AFTER_S = 1  # what a 503 asks a client to wait: the queue drains in well under a second at full load


def deadline_error(stage: str) -> RequestError:
    return RequestError(504, f"the request did not finish within its deadline ({stage})")
