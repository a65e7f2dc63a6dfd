"""Admission: work slots, the queue behind them, and the server-wide budget of body bytes."""

import asyncio
import time

import pytest

from imagerec.serve import ServeLimits, create_app

from serve_helpers import (request, instances_request, assert_error)

httpx = pytest.importorskip("httpx")


def test_over_the_concurrency_cap_requests_queue_and_a_full_queue_is_503_with_retry_after(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(max_concurrent=1, max_queue=1, batch_window_ms=500))
    body = instances_request(dataset.x_test[:1])

    async def three_requests():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://imagerec.test", timeout=60) as client:
            first = asyncio.create_task(client.post("/v1/models/cifar10:predict", **body))
            await asyncio.sleep(0.2)  # the first now holds the one slot, waiting in the batcher's window
            second = asyncio.create_task(client.post("/v1/models/cifar10:predict", **body))
            await asyncio.sleep(0.1)  # the second waits in the queue
            third = await client.post("/v1/models/cifar10:predict", **body)
            return await first, await second, third

    first, second, third = asyncio.run(three_requests())
    assert first.status_code == 200 and second.status_code == 200  # queued, then served
    assert_error(third, 503, "busy")
    assert third.headers["retry-after"] == "1"


def test_a_queued_request_gives_up_at_its_deadline(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(max_concurrent=1, timeout_s=0.5, batch_window_ms=2000))
    body = instances_request(dataset.x_test[:1])

    async def two_requests():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://imagerec.test", timeout=60) as client:
            first = asyncio.create_task(client.post("/v1/models/cifar10:predict", **body))
            await asyncio.sleep(0.1)
            return await first, await client.post("/v1/models/cifar10:predict", **body)

    first, second = asyncio.run(two_requests())
    assert_error(first, 504, "deadline")  # its inference waited in the batch window past it
    assert_error(second, 504, "deadline")
    assert request(app, "GET", "/healthz").status_code == 200


def test_admission_serves_in_arrival_order_and_a_waiter_leaves_at_its_deadline():
    from imagerec.serve import Admission, RequestError

    async def scenario():
        admission, order = Admission(slots=1, queue_size=3), []

        async def job(name, hold_s, timeout_s):
            async with admission.slot(time.monotonic() + timeout_s):
                order.append(name)
                await asyncio.sleep(hold_s)

        first = asyncio.create_task(job("first", 0.3, 10))
        await asyncio.sleep(0.05)
        late = asyncio.create_task(job("gives up", 0, 0.1))  # waits behind "first", leaves at 0.1 s
        second = asyncio.create_task(job("second", 0, 10))
        third = asyncio.create_task(job("third", 0, 10))
        await asyncio.sleep(0.01)
        with pytest.raises(RequestError) as full:  # 3 waiting and the queue holds 3
            await job("refused", 0, 10)
        with pytest.raises(RequestError) as timed_out:
            await late
        await asyncio.gather(first, second, third)
        return order, full.value, timed_out.value, admission.active, admission.waiting

    order, full, timed_out, active, waiting = asyncio.run(scenario())
    assert order == ["first", "second", "third"]
    assert full.status == 503 and full.headers == {"retry-after": "1"}
    assert timed_out.status == 504 and "waiting for a work slot" in timed_out.message
    assert active == 0 and waiting == 0  # every slot given back


def test_bodies_held_at_once_are_bounded_server_wide_and_freed_when_answered(classifier):
    app = create_app(classifier, "cifar10", ServeLimits(max_body_mb=1, max_pending_mb=1.5))
    half_sent, finish = asyncio.Event(), asyncio.Event()

    async def stalled_body():
        yield b"x" * 500_000
        half_sent.set()
        await finish.wait()
        yield b"x" * 500_000

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://imagerec.test", timeout=60) as client:
            url, declared = "/v1/models/cifar10:predict", {"content-length": "1000000"}
            first = asyncio.create_task(client.post(url, content=stalled_body(), headers=declared))
            await half_sent.wait()  # the first request holds its declared 1,000,000 bytes
            second = await client.post(url, content=b"x" * 1_000_000)
            finish.set()
            return second, await first, await client.post(url, content=b"x" * 1_000_000)

    second, first, third = asyncio.run(scenario())
    assert_error(second, 503, "retry later")
    assert second.headers["retry-after"] == "1"
    assert_error(first, 400, "JSON")  # read whole, then parsed (it is not JSON)
    assert_error(third, 400, "JSON")  # the first request's bytes were given back
