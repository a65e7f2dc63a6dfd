"""What the serve tests share: requests to the in-process app (httpx, no sockets), bodies good and hostile, and
raw exchanges with a real server."""

import asyncio
import base64
import io
import json
import socket
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

from imagerec.evaluation import predict

import hostile_files


def request(app, method, url, **options):
    return asyncio.run(send_all(app, [(method, url, options)]))[0]


async def send_all(app, calls):
    """Send (method, url, options) calls concurrently to the in-process app; responses in order."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://imagerec.test", timeout=60) as client:
        return await asyncio.gather(*(client.request(method, url, **options) for method, url, options in calls))


def png_bytes(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def instances_request(images) -> dict:
    return {"json": {"instances": np.asarray(images).tolist()}}


def assert_error(response, status, fragment=""):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and fragment in body["error"], body
    assert "Traceback" not in response.text


def saving_predict(classifier, paths):
    return predict.predict_files(classifier, paths, top_k=5)


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buffer, "PNG")  # 144 Mpixels of zeros in ~140 kB
    return buffer.getvalue()


async def chunked_body(total: int):
    for _ in range(total // 65536):
        yield b"\0" * 65536


def deep_json(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"


PIXEL = np.full((32, 32, 3), 128).tolist()


BAD_REQUESTS = {
    "body over the limit": ("POST", "/predict", {"content": b"\0" * (2 * 2**20 + 1)}, 413, "over the limit"),
    "chunked body over the limit": ("POST", "/v1/models/cifar10:predict", {"content": "chunks"}, 413, "over the limit"),
    "decompression bomb": ("POST", "/predict", {"files": {"file": ("bomb.png", "bomb")}}, 413, "pixels"),
    "progressive JPEG scan bomb": ("POST", "/predict", {"files": {"file": ("scans.jpg", "scan bomb")}}, 413, "scans"),
    "scan bomb in b64": ("POST", "/v1/models/cifar10:predict", {"json": {"instances": [{"b64": "scan bomb"}]}}, 413,
                         "scans"),
    "icon that decodes on opening": ("POST", "/predict", {"files": {"file": ("big.ico", "icon")}}, 400, "not one of"),
    "header says more than its data": ("POST", "/predict", {"files": {"file": ("patched.jpg", "patched")}}, 400,
                                       "truncated JPEG"),
    "not an image": ("POST", "/predict", {"files": {"file": ("notes.jpg", b"hello, not a jpeg")}}, 400, "not an image"),
    "truncated image": ("POST", "/predict", {"files": {"file": ("cut.png", "truncated")}}, 400, "cut.png"),
    "empty file": ("POST", "/predict", {"files": {"file": ("empty.png", b"")}}, 400, "empty"),
    "no file": ("POST", "/predict", {"data": {"note": "hi"}}, 400, "no image"),
    "too many files": ("POST", "/predict", {"files": [("file", (f"{i}.png", b"x")) for i in range(5)]}, 400, "files"),
    "nonsense top_k": ("POST", "/predict?top_k=eleven", {"files": {"file": ("a.png", "valid")}}, 400, "top_k"),
    "superscript top_k": ("POST", "/predict?top_k=%C2%B2", {"files": {"file": ("a.png", "valid")}}, 400, "top_k"),
    "5,000-digit top_k": ("POST", "/predict?top_k=" + "9" * 5000, {"files": {"file": ("a.png", "valid")}}, 400,
                          "top_k"),
    "Arabic-Indic top_k": ("POST", "/predict?top_k=%D9%A1", {"files": {"file": ("a.png", "valid")}}, 400, "top_k"),
    "full-width top_k": ("POST", "/predict?top_k=%EF%BC%95", {"files": {"file": ("a.png", "valid")}}, 400, "top_k"),
    "wrong json": ("POST", "/v1/models/cifar10:predict", {"content": b'{"instances": [1, 2'}, 400, "JSON"),
    "json not an object": ("POST", "/v1/models/cifar10:predict", {"json": [1, 2]}, 400, "JSON object"),
    "deeply nested json": ("POST", "/v1/models/cifar10:predict", {"content": deep_json(100_000)}, 400, "JSON"),
    "numpy-deep nesting": ("POST", "/v1/models/cifar10:predict", {"content": deep_json(200)}, 400, "instance 0"),
    "no instances key": ("POST", "/v1/models/cifar10:predict", {"json": {"images": []}}, 400, "instances"),
    "empty batch": ("POST", "/v1/models/cifar10:predict", {"json": {"instances": []}}, 400, "empty"),
    "too many instances": ("POST", "/v1/models/cifar10:predict", {"json": {"instances": [PIXEL] * 9}}, 400, "limit"),
    "wrong shape": ("POST", "/v1/models/cifar10:predict", {"json": {"instances": [[[1, 2, 3]]]}}, 400, "shape"),
    "ragged array": ("POST", "/v1/models/cifar10:predict", {"json": {"instances": [[[1], [1, 2]]]}}, 400, "rectangular"),
    "strings": ("POST", "/v1/models/cifar10:predict",
                {"json": {"instances": [np.full((32, 32, 3), "7").tolist()]}}, 400, "numbers"),
    "NaN": ("POST", "/v1/models/cifar10:predict",
            {"content": json.dumps({"instances": [np.full((32, 32, 3), np.nan).tolist()]}).encode()}, 400, "finite"),
    "out of range": ("POST", "/v1/models/cifar10:predict",
                     {"json": {"instances": [np.full((32, 32, 3), 300).tolist()]}}, 400, "0-255"),
    "bad base64": ("POST", "/v1/models/cifar10:predict", {"json": {"instances": [{"b64": "***"}]}}, 400, "base64"),
    "unknown input name": ("POST", "/v1/models/cifar10:predict", {"json": {"instances": [{"x": PIXEL}]}}, 400, "input"),
    "unknown signature": ("POST", "/v1/models/cifar10:predict",
                          {"json": {"instances": [PIXEL], "signature_name": "train"}}, 400, "signature"),
    "unknown model": ("POST", "/v1/models/mnist:predict", {"json": {"instances": [PIXEL]}}, 404, "Servable not found"),
    "unknown version": ("GET", "/v1/models/cifar10/versions/7", {}, 404, "Servable not found"),
    "unknown route": ("GET", "/admin", {}, 404, "no route"),
    "wrong method on predict": ("GET", "/v1/models/cifar10:predict", {}, 405, "POST"),
    "wrong method on health": ("DELETE", "/healthz", {}, 405, "not allowed"),
}


def materialise(options: dict, dataset) -> dict:
    """Fill in the bodies that are built at test time (big or derived from real images)."""
    options = dict(options)
    hostile = {"scan bomb": hostile_files.scan_bomb, "patched": hostile_files.patched_size_jpeg,
               "icon": lambda: hostile_files.ico_wrapping(hostile_files.large_png(1500))}
    if isinstance(options.get("json"), dict) and options["json"].get("instances") == [{"b64": "scan bomb"}]:
        options["json"] = {"instances": [{"b64": base64.b64encode(hostile_files.scan_bomb()).decode()}]}
    if options.get("content") == "chunks":
        options["content"] = chunked_body(3 * 2**20)  # an async generator: sent chunked, no Content-Length
    if "files" in options and isinstance(options["files"], dict):
        name, content = options["files"]["file"]
        content = {"bomb": bomb_png, "valid": lambda: png_bytes(dataset.x_test[0]),
                   "truncated": lambda: png_bytes(dataset.x_test[0])[:200], **hostile}.get(content, lambda: content)()
        options["files"] = {"file": (name, content)}
    return options


def one_bit_bomb_b64() -> str:
    buffer = io.BytesIO()
    Image.new("1", (6300, 6300)).save(buffer, "PNG")  # 39.7 Mpixels, under the per-image limit, in ~5 kB
    return base64.b64encode(buffer.getvalue()).decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


READ_TIMEOUT_S = 3


def post_json(url, body: bytes):
    call = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def declare_a_huge_body(url) -> bytes:
    """Announce a 1 GB body and send none of it: the answer must come from the headers alone."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /v1/models/cifar10:predict HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
        return connection.recv(4096)


def open_slow_clients(url, count: int) -> list:
    """Sockets that start a request and stop: half mid-body (the body is `{` of a declared 1,000 bytes),
    half mid-headers (slowloris)."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for index in range(count):
        connection = socket.create_connection((host, int(port)), timeout=30)
        connection.sendall(b"POST /v1/models/cifar10:predict HTTP/1.1\r\nHost: x\r\n" + (
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{" if index % 2 else b"X-Slow: 1"))
        sockets.append(connection)
    return sockets


def raw_exchange(url, request_bytes: bytes) -> bytes:
    """Send `request_bytes` on one connection and read until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request_bytes)
        replies = b""
        while chunk := connection.recv(65536):
            replies += chunk
    return replies
