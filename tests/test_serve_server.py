"""The real server (`imagerec serve` in a subprocess): TF Serving clients, bad ports, what h11 cannot parse."""

import json
import socket

import numpy as np
import pytest


from helpers import run_cli
from serve_helpers import (post_json, declare_a_huge_body, raw_exchange, free_port)


def test_real_server_answers_tf_serving_clients_and_survives_bad_input(live_server, classifier, dataset):
    body = json.dumps({"instances": dataset.x_test[:2].tolist()}).encode()
    status, answer = post_json(f"{live_server}/v1/models/cifar10:predict", body)
    assert status == 200
    np.testing.assert_allclose(answer["predictions"], classifier.predict_proba(dataset.x_test[:2]), atol=1e-6)
    assert post_json(f"{live_server}/v1/models/cifar10:predict", b"[" * 50_000)[0] == 400
    assert declare_a_huge_body(live_server).startswith(b"HTTP/1.1 413")
    assert post_json(f"{live_server}/v1/models/cifar10:predict", body) == (status, answer)


def test_serve_command_refuses_a_busy_port_and_bad_options(airbench_run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli("serve", airbench_run, "--port", busy.getsockname()[1])
        grpc_busy = run_cli("serve", airbench_run, "--port", free_port(), "--grpc-port", busy.getsockname()[1])
    for result in (result, grpc_busy):
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "cannot listen" in result.stderr
    for option in (["--port", "70000"], ["--name", "../x"], ["--timeout-s", "-1"], ["--max-batch-size", "1000000000"],
                   ["--max-body-mb", "1e30"]):
        result = run_cli("serve", airbench_run, *option)
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, option


@pytest.mark.parametrize("header_bytes", [20_000, 100_000])
def test_headers_over_16_kib_are_400_json_however_they_arrive(live_server, header_bytes):
    replies = raw_exchange(live_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes
                            + b"\r\n\r\n")
    assert replies.startswith(b"HTTP/1.1 400"), replies[:200]
    head, _, body = replies.partition(b"\r\n\r\n")
    assert b"application/json" in head and "16 KiB" in json.loads(body)["error"]


def test_what_h11_cannot_parse_is_a_json_400(live_server):
    replies = raw_exchange(live_server, b"NOT HTTP AT ALL\r\n\r\n")
    head, _, body = replies.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and "invalid HTTP request" in json.loads(body)["error"]
