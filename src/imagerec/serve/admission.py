"""Admission: a bounded number of requests at work, a bounded queue behind them (`Admission`), and a server-wide
budget of request-body bytes held (`BodyBudget`). Over either: 503 with Retry-After."""

import asyncio
import collections
import contextlib
import time

from imagerec.serve.limits import RETRY_AFTER_S, RequestError, deadline_error


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
                raise deadline_error("waiting for a work slot") from None
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
