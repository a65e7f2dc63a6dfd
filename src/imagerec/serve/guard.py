"""The ASGI guard in front of every route: framing checks, the body read within its deadline and size, the
body budget, then a work slot, all within the request's deadline."""

import asyncio
import json
import time

from imagerec.serve.admission import Admission, BodyBudget
from imagerec.serve.limits import DEADLINE_KEY, MAX_HEADER_BYTES, RequestError, ServeLimits, deadline_error

MIN_BODY_RATE_BYTES_S = 100_000  # each 100 kB of body received extends its read deadline by 1 s


class RequestGuard:
    """ASGI middleware, before any route runs: the framing checks (a body framed twice, headers over
    MAX_HEADER_BYTES: 400), the body's read deadline (408) and size limit (413) and the server-wide budget of
    body bytes held (`BodyBudget`, 503), then a work slot (`Admission`), all within the request's deadline (504).

    Starlette has no global body limit, and a chunked upload has no Content-Length to check, so the body is
    read here, counted as it arrives, and replayed to the app only when it is complete and fits. Nothing
    counts against the concurrency cap until then: a client that sends its body slowly holds no slot.
    """

    def __init__(self, app, limits: ServeLimits, admission: Admission, budget: BodyBudget, metrics, route_of):
        self.app = app
        self.limits = limits
        self.admission, self.budget = admission, budget  # shared with the gRPC API (the app's state)
        self.metrics, self.route_of = metrics, route_of  # route_of(scope): the route's label for /metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        send = _ResponseTracker(_with_server_timing(send, started))
        try:
            await self._guarded(scope, receive, send)
        finally:
            if send.status is not None:
                self.metrics.answered(self.route_of(scope), send.status, started)

    async def _guarded(self, scope, receive, send):
        deadline = time.monotonic() + self.limits.timeout_s
        scope[DEADLINE_KEY] = deadline
        try:
            _check_framing(scope)
            if scope["method"] not in ("POST", "PUT", "PATCH"):
                return await self.app(scope, receive, send)
            with self.budget.holding() as reserve:
                body = await self._read_body(scope, receive, time.monotonic() + self.limits.read_timeout_s,
                                             reserve)
                self.metrics.bytes_received.inc(len(body))
                waiting = time.perf_counter()
                async with self.admission.slot(deadline):
                    self.metrics.latency.labels("admission").observe(time.perf_counter() - waiting)
                    await asyncio.wait_for(self.app(scope, _replay(body), send),
                                           max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            if not send.started:
                await _send_error(send, deadline_error("while it was handled"))
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
                    raise deadline_error("reading the body") from None
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


class _ClientGone(Exception):
    """The client disconnected before its request was complete: nobody to answer."""


class _ResponseTracker:
    """An ASGI send that remembers whether the response has started (after which no error can be sent)."""

    def __init__(self, send):
        self._send, self.started, self.status = send, False, None

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            self.started, self.status = True, message["status"]
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
