"""The ASGI guard: body deadlines, framing, and slow clients that hold no slot."""

import asyncio
import json
import time

import pytest

from imagerec.serve import ServeLimits, create_app

from serve_helpers import (request, assert_error, READ_TIMEOUT_S, post_json, open_slow_clients, raw_exchange)

httpx = pytest.importorskip("httpx")


def test_slow_clients_hold_no_slot_and_are_cut_off_at_the_read_deadline(live_server, dataset):
    import concurrent.futures

    slow = open_slow_clients(live_server, 100)
    try:
        time.sleep(0.5)  # every slow request has reached the server
        body = json.dumps({"instances": dataset.x_test[:1].tolist()}).encode()

        def timed_request(_):
            started = time.monotonic()
            status, _ = post_json(f"{live_server}/v1/models/cifar10:predict", body)
            return status, time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(timed_request, range(20)))
        assert [status for status, _ in answers] == [200] * 20
        assert max(seconds for _, seconds in answers) < 2
        cut_off = []
        for connection in slow:  # each is answered 408 (or closed) once its read deadline passes
            connection.settimeout(READ_TIMEOUT_S + 10)
            cut_off.append(connection.recv(4096))
    finally:
        for connection in slow:
            connection.close()
    assert all(reply.startswith(b"HTTP/1.1 408") for reply in cut_off), {reply[:40] for reply in cut_off}
    assert post_json(f"{live_server}/v1/models/cifar10:predict", body)[0] == 200


def test_a_body_still_arriving_at_the_request_deadline_is_504(classifier):
    app = create_app(classifier, "cifar10", ServeLimits(timeout_s=1, read_timeout_s=10))

    async def slow_body():
        yield b'{"instances": '
        await asyncio.sleep(3)
        yield b"[]}"

    assert_error(request(app, "POST", "/v1/models/cifar10:predict", content=slow_body()), 504, "reading the body")


def test_a_request_framed_two_ways_is_refused_and_its_connection_closed(live_server):
    smuggled = (b"POST /v1/models/cifar10:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    replies = raw_exchange(live_server, smuggled)
    assert replies.count(b"HTTP/1.1 ") == 1 and replies.startswith(b"HTTP/1.1 400"), replies[:300]
    assert b"Transfer-Encoding and Content-Length" in replies
