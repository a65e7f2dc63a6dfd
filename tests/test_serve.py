"""The prediction service: every route, every bad input and its status, batching, and a real server + browser.

API tests drive the ASGI app in-process through httpx (no sockets); one test starts `imagerec serve` and
drives its page in headless Chromium.
"""

import asyncio
import base64
import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from imagerec import data, predict, saving
from imagerec.serve import ServeLimits, create_app

import hostile_files
from conftest import chromium_path, run_cli

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def classifier(airbench_run):
    return saving.load_model(airbench_run)


@pytest.fixture(scope="module")
def app(classifier):
    return create_app(classifier, "cifar10")


def request(app, method, url, **options):
    return asyncio.run(_requests(app, [(method, url, options)]))[0]


async def _requests(app, calls):
    """Send (method, url, options) calls concurrently to the in-process app; responses in order."""
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


# ---------------------------------------------------------------- routes that work

def test_health_status_and_metadata(app, classifier):
    health = request(app, "GET", "/healthz")
    assert health.json() == {"status": "ok", "model": "cifar10"}
    assert health.headers["server-timing"].startswith("app;dur=")  # the server's own time, for clients
    for path in ("/v1/models/cifar10", "/v1/models/cifar10/versions/1"):
        status = request(app, "GET", path).json()["model_version_status"][0]
        assert status["state"] == "AVAILABLE" and status["status"]["error_code"] == "OK"
    metadata = request(app, "GET", "/v1/models/cifar10/metadata").json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (spec,) = signature["inputs"].values()
    assert [dim["size"] for dim in spec["tensor_shape"]["dim"]] == ["-1", "32", "32", "3"]
    assert spec["dtype"] == "DT_FLOAT" and metadata["class_names"] == list(classifier.class_names)


def test_page_is_self_contained(app):
    response = request(app, "GET", "/")
    assert response.status_code == 200 and "<input" in response.text
    assert "src=\"http" not in response.text and "@import" not in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_predict_upload_gives_the_labels_the_cli_gives(app, classifier, image_folder, tmp_path):
    jpeg = next((image_folder / "test" / "green_rings").glob("*.jpg"))
    large = tmp_path / "large.png"
    Image.open(jpeg).resize((120, 90)).save(large)  # any size: resized like `imagerec predict` does
    files = [("file", ("cat.jpg", jpeg.read_bytes(), "image/jpeg")), ("file", ("large.png", large.read_bytes()))]
    response = request(app, "POST", "/predict?top_k=3", files=files)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected, _ = saving_predict(classifier, [jpeg, large])
    assert [item["filename"] for item in predictions] == ["cat.jpg", "large.png"]
    for got, want in zip(predictions, expected):
        assert [top["label"] for top in got["top"]] == [top["label"] for top in want["top"]][:3]
        np.testing.assert_allclose([top["probability"] for top in got["top"]],
                                   [top["probability"] for top in want["top"]][:3], atol=1e-6)


def saving_predict(classifier, paths):
    return predict.predict_files(classifier, paths, top_k=5)


def test_tf_serving_predict_accepts_arrays_b64_named_and_columnar(app, classifier, dataset):
    images = dataset.x_test[:3]
    expected = classifier.predict_proba(images)
    encoded = [{"b64": base64.b64encode(png_bytes(image)).decode()} for image in images]
    bodies = {
        "predictions": [{"instances": images.tolist()}, {"instances": encoded},
                        {"instances": [{"image": image.tolist()} for image in images]},
                        {"instances": [{"image": item} for item in encoded], "signature_name": "serving_default"}],
        "outputs": [{"inputs": images.tolist()}, {"inputs": {"image": images.tolist()}}],
    }
    for key, variants in bodies.items():
        for body in variants:
            response = request(app, "POST", "/v1/models/cifar10:predict", json=body)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()[key], expected, atol=1e-6)
    versioned = request(app, "POST", "/v1/models/cifar10/versions/1:predict", **instances_request(images))
    np.testing.assert_allclose(versioned.json()["predictions"], expected, atol=1e-6)


def test_fifty_concurrent_requests_give_the_sequential_results_in_batches(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(batch_window_ms=20))
    calls = [("POST", "/v1/models/cifar10:predict", instances_request(dataset.x_test[index:index + 1]))
             for index in range(50)]
    one_at_a_time = [asyncio.run(_requests(app, [call]))[0].json()["predictions"][0] for call in calls]
    concurrent = [response.json()["predictions"][0] for response in asyncio.run(_requests(app, calls))]
    # Same labels; probabilities equal up to float32 summation order, which depends on the batch size.
    assert np.array_equal(np.argmax(concurrent, 1), np.argmax(one_at_a_time, 1))
    np.testing.assert_allclose(concurrent, one_at_a_time, atol=1e-6)
    assert max(app.state.batcher.batch_sizes[-50:]) > 1  # requests really were merged into batches


# ---------------------------------------------------------------- bad input: status, JSON error, server stays up

def _bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buffer, "PNG")  # 144 Mpixels of zeros in ~140 kB
    return buffer.getvalue()


async def _chunks(total: int):
    for _ in range(total // 65536):
        yield b"\0" * 65536


def _deep_json(depth: int) -> bytes:
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
    "deeply nested json": ("POST", "/v1/models/cifar10:predict", {"content": _deep_json(100_000)}, 400, "JSON"),
    "numpy-deep nesting": ("POST", "/v1/models/cifar10:predict", {"content": _deep_json(200)}, 400, "instance 0"),
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


def _materialise(options: dict, dataset) -> dict:
    """Fill in the bodies that are built at test time (big or derived from real images)."""
    options = dict(options)
    hostile = {"scan bomb": hostile_files.scan_bomb, "patched": hostile_files.patched_size_jpeg,
               "icon": lambda: hostile_files.ico_wrapping(hostile_files.large_png(1500))}
    if isinstance(options.get("json"), dict) and options["json"].get("instances") == [{"b64": "scan bomb"}]:
        options["json"] = {"instances": [{"b64": base64.b64encode(hostile_files.scan_bomb()).decode()}]}
    if options.get("content") == "chunks":
        options["content"] = _chunks(3 * 2**20)  # an async generator: sent chunked, no Content-Length
    if "files" in options and isinstance(options["files"], dict):
        name, content = options["files"]["file"]
        content = {"bomb": _bomb_png, "valid": lambda: png_bytes(dataset.x_test[0]),
                   "truncated": lambda: png_bytes(dataset.x_test[0])[:200], **hostile}.get(content, lambda: content)()
        options["files"] = {"file": (name, content)}
    return options


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_request_gets_its_status_and_a_json_error(case, classifier, dataset):
    limits = ServeLimits(max_body_mb=2, max_images=4, max_instances=8)
    app = create_app(classifier, "cifar10", limits)
    method, url, options, status, fragment = BAD_REQUESTS[case]
    assert_error(request(app, method, url, **_materialise(options, dataset)), status, fragment)
    # ...and the server is still up and still right.
    good = request(app, "POST", "/v1/models/cifar10:predict", **instances_request(dataset.x_test[:1]))
    np.testing.assert_allclose(good.json()["predictions"], classifier.predict_proba(dataset.x_test[:1]), atol=1e-6)


def test_image_over_the_pixel_limit_is_refused_before_decoding(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(max_image_pixels=64 * 64))
    big = png_bytes(np.zeros((65, 64, 3)))
    assert_error(request(app, "POST", "/predict", files={"file": ("big.png", big)}), 413, "over the limit of 4,096")
    encoded = {"instances": [{"b64": base64.b64encode(big).decode()}]}
    assert_error(request(app, "POST", "/v1/models/cifar10:predict", json=encoded), 413, "pixels")
    assert request(app, "POST", "/predict", files={"file": ("ok.png", png_bytes(np.zeros((64, 64, 3))))}).status_code == 200


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


def _one_bit_bomb_b64() -> str:
    buffer = io.BytesIO()
    Image.new("1", (6300, 6300)).save(buffer, "PNG")  # 39.7 Mpixels, under the per-image limit, in ~5 kB
    return base64.b64encode(buffer.getvalue()).decode()


def test_many_large_images_in_one_request_are_refused_from_their_headers(classifier):
    """64 images of 39.7 Mpixels each: ~18 s of decoding before the per-request pixel budget existed."""
    app = create_app(classifier, "cifar10")
    bomb = _one_bit_bomb_b64()
    started = time.monotonic()
    response = request(app, "POST", "/v1/models/cifar10:predict", json={"instances": [{"b64": bomb}] * 64})
    assert_error(response, 413, "add up to 2,540,160,000 pixels")
    assert time.monotonic() - started < 5  # refused from the headers, not after decoding them
    files = [("file", (f"{index}.png", base64.b64decode(bomb))) for index in range(2)]
    assert_error(request(app, "POST", "/predict", files=files), 413, "over the limit of 64,000,000")


def test_the_deadline_covers_decoding(classifier):
    """With the pixel budget lifted, decoding stops at the request's deadline instead of answering 200 later."""
    app = create_app(classifier, "cifar10", ServeLimits(timeout_s=1, max_request_pixels=10**10))
    started = time.monotonic()
    response = request(app, "POST", "/v1/models/cifar10:predict",
                       json={"instances": [{"b64": _one_bit_bomb_b64()}] * 64})
    assert_error(response, 504, "deadline")
    assert time.monotonic() - started < 5


def test_decode_images_stops_at_its_deadline_before_decoding():
    from imagerec.serve import RequestError, decode_images

    with pytest.raises(RequestError) as error:
        decode_images([("a.png", png_bytes(np.zeros((8, 8, 3))))], (32, 32), ServeLimits(), time.monotonic() - 1)
    assert error.value.status == 504


def test_inference_past_its_deadline_is_504(classifier, dataset):
    app = create_app(classifier, "cifar10", ServeLimits(timeout_s=0.05, batch_window_ms=1000))
    assert_error(request(app, "POST", "/v1/models/cifar10:predict", **instances_request(dataset.x_test[:1])), 504,
                 "did not finish")
    assert request(app, "GET", "/healthz").status_code == 200


# ---------------------------------------------------------------- the real server and a real browser

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


READ_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def live_server(airbench_run):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "imagerec", "serve", str(airbench_run), "--port", str(port),
                               "--read-timeout-s", str(READ_TIMEOUT_S)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"imagerec serve exited: {server.stdout.read()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("imagerec serve did not answer /healthz within 120 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _post_json(url, body: bytes):
    call = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _declare_a_huge_body(url) -> bytes:
    """Announce a 1 GB body and send none of it: the answer must come from the headers alone."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /v1/models/cifar10:predict HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
        return connection.recv(4096)


def test_real_server_answers_tf_serving_clients_and_survives_bad_input(live_server, classifier, dataset):
    body = json.dumps({"instances": dataset.x_test[:2].tolist()}).encode()
    status, answer = _post_json(f"{live_server}/v1/models/cifar10:predict", body)
    assert status == 200
    np.testing.assert_allclose(answer["predictions"], classifier.predict_proba(dataset.x_test[:2]), atol=1e-6)
    assert _post_json(f"{live_server}/v1/models/cifar10:predict", b"[" * 50_000)[0] == 400
    assert _declare_a_huge_body(live_server).startswith(b"HTTP/1.1 413")
    assert _post_json(f"{live_server}/v1/models/cifar10:predict", body) == (status, answer)


def _open_slow_clients(url, count: int) -> list:
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


def test_slow_clients_hold_no_slot_and_are_cut_off_at_the_read_deadline(live_server, dataset):
    import concurrent.futures

    slow = _open_slow_clients(live_server, 100)
    try:
        time.sleep(0.5)  # every slow request has reached the server
        body = json.dumps({"instances": dataset.x_test[:1].tolist()}).encode()

        def timed_request(_):
            started = time.monotonic()
            status, _ = _post_json(f"{live_server}/v1/models/cifar10:predict", body)
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
    assert _post_json(f"{live_server}/v1/models/cifar10:predict", body)[0] == 200


def test_page_labels_a_chosen_and_a_dropped_image_in_headless_chromium(live_server, image_folder, classifier):
    if not chromium_path():
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright

    photo = image_folder / "test" / "blue_checks" / "002.jpg"  # 32x32, as most synthetic images
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda sent: requests.append(sent.url))
            page.goto(live_server + "/")
            page.set_input_files("#files", str(photo))
            page.wait_for_selector(".card .row .label", timeout=30_000)
            page.evaluate("""(bytes) => {
                const transfer = new DataTransfer();
                transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"}));
                document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer}));
            }""", list(photo.read_bytes()))
            # Two cards of 4 labels each: the model has 4 classes, fewer than the page's 5 (it asked for 5 and
            # got 400 before the page's top_k followed the model). The page's CSP forbids eval.
            expect(page.locator(".card .row")).to_have_count(8, timeout=30_000)
            cards = page.evaluate("""Array.from(document.querySelectorAll('.card')).map(card => ({
                name: card.querySelector('.name').textContent,
                labels: Array.from(card.querySelectorAll('.label')).map(label => label.textContent),
                imageWidth: card.querySelector('img').naturalWidth}))""")
        finally:
            browser.close()
    assert problems == []
    assert all(url.startswith(live_server) or url.startswith("blob:") for url in requests)  # nothing external
    assert sorted(card["name"] for card in cards) == sorted(["dropped.jpg", photo.name])
    expected = saving_predict(classifier, [photo])[0][0]["top"][0]["label"]
    for card in cards:
        assert len(card["labels"]) == 4 and card["labels"][0] == expected and card["imageWidth"] == 32


def test_serve_command_refuses_a_busy_port_and_bad_options(airbench_run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli("serve", airbench_run, "--port", busy.getsockname()[1])
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "cannot listen" in result.stderr
    for option in (["--port", "70000"], ["--name", "../x"], ["--timeout-s", "-1"], ["--max-batch-size", "1000000000"],
                   ["--max-body-mb", "1e30"]):
        result = run_cli("serve", airbench_run, *option)
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, option


def test_batcher_pads_to_a_few_shapes_and_returns_each_callers_rows():
    from imagerec.serve import Batcher

    shapes = []

    def reference(batch):
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)

    def predict(batch):
        shapes.append(len(batch))
        return reference(batch)

    batcher = Batcher(predict, max_batch_size=128, window_s=0)
    assert batcher.bucket_sizes() == [*range(1, 33), 64, 128]
    images = np.random.default_rng(0).random((300, 2, 2, 3)).astype(np.float32)
    for count in (1, 3, 32, 33, 70, 300):
        np.testing.assert_allclose(batcher.predict_padded(images[:count]), reference(images[:count]), rtol=1e-6)
    assert shapes == [1, 3, 32, 64, 128, 128, 128, 64]  # 33 and 70 padded up; 300 = 128 + 128 + (44 -> 64)

    async def three_callers():
        return await asyncio.gather(*(batcher.predict(images[start:start + 5]) for start in (0, 5, 10)))

    for start, rows in zip((0, 5, 10), asyncio.run(three_callers())):
        np.testing.assert_allclose(rows, reference(images[start:start + 5]), rtol=1e-6)


def test_a_64_px_model_is_served_at_its_size_and_resizes_uploads_to_it(photo_run, photo_folder):
    classifier = saving.load_model(photo_run)
    app = create_app(classifier, "photos")
    metadata = request(app, "GET", "/v1/models/photos/metadata").json()
    (spec,) = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"].values()
    assert [dim["size"] for dim in spec["tensor_shape"]["dim"]] == ["-1", "64", "64", "3"]
    photo = sorted((photo_folder / "test" / "green_rings").glob("*.webp"))[0]  # 80x80 or larger, not 64x64
    expected = classifier.predict_proba(data.decode_image(photo, (64, 64))[None])
    body = {"instances": [{"b64": base64.b64encode(photo.read_bytes()).decode()}]}
    response = request(app, "POST", "/v1/models/photos:predict", json=body)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], expected, atol=1e-6)
    wrong_size = request(app, "POST", "/v1/models/photos:predict", **instances_request(np.zeros((1, 32, 32, 3))))
    assert_error(wrong_size, 400, "64")


# ---------------------------------------------------------------- hardening again (issue 20)

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


def test_a_body_still_arriving_at_the_request_deadline_is_504(classifier):
    app = create_app(classifier, "cifar10", ServeLimits(timeout_s=1, read_timeout_s=10))

    async def slow_body():
        yield b'{"instances": '
        await asyncio.sleep(3)
        yield b"[]}"

    assert_error(request(app, "POST", "/v1/models/cifar10:predict", content=slow_body()), 504, "reading the body")


@pytest.mark.parametrize("field, value", [("max_batch_size", 10**9), ("max_body_mb", 1e30), ("workers", 10**6),
                                          ("max_pending_mb", 8.0)])
def test_serve_limits_beyond_sense_are_refused(field, value):
    from imagerec.errors import UserError

    with pytest.raises(UserError, match=field):
        ServeLimits(**{field: value})


def _raw_exchange(url, request_bytes: bytes) -> bytes:
    """Send `request_bytes` on one connection and read until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request_bytes)
        replies = b""
        while chunk := connection.recv(65536):
            replies += chunk
    return replies


def test_a_request_framed_two_ways_is_refused_and_its_connection_closed(live_server):
    smuggled = (b"POST /v1/models/cifar10:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    replies = _raw_exchange(live_server, smuggled)
    assert replies.count(b"HTTP/1.1 ") == 1 and replies.startswith(b"HTTP/1.1 400"), replies[:300]
    assert b"Transfer-Encoding and Content-Length" in replies


@pytest.mark.parametrize("header_bytes", [20_000, 100_000])
def test_headers_over_16_kib_are_400_json_however_they_arrive(live_server, header_bytes):
    replies = _raw_exchange(live_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes
                            + b"\r\n\r\n")
    assert replies.startswith(b"HTTP/1.1 400"), replies[:200]
    head, _, body = replies.partition(b"\r\n\r\n")
    assert b"application/json" in head and "16 KiB" in json.loads(body)["error"]


def test_what_h11_cannot_parse_is_a_json_400(live_server):
    replies = _raw_exchange(live_server, b"NOT HTTP AT ALL\r\n\r\n")
    head, _, body = replies.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and "invalid HTTP request" in json.loads(body)["error"]
