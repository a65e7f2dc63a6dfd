"""Benchmark: every protocol `imagerec serve` speaks, driven by load generators nobody here wrote.

    python benchmarks/serve_protocols.py RUN_DIR --connections 1 8 32 200 --duration-s 10
    python benchmarks/serve_protocols.py RUN_DIR --bodies v2_binary --connections 32 --json-out results.json

Starts `imagerec serve RUN_DIR --grpc-port P` (loopback) once, then for each request body and each number of
connections runs `wrk` (Debian's package; a Lua script sets the method, the headers and the body, and counts the
answers by status, and whether each 503 carried Retry-After) for --duration-s, with one 32x32 CIFAR-10 test image
per request:

    v2_binary      POST /v2/models/cifar10/infer, Triton's binary tensor extension, FP32 (12,288 bytes + header)
    v2_binary_u8   the same with the UINT8 input (3,072 bytes)
    v2_json        POST /v2/models/cifar10/infer, the FP32 tensor as JSON numbers
    tfs_json       POST /v1/models/cifar10:predict, {"instances": [H x W x 3 numbers]} (TF Serving's REST API)
    tfs_b64        POST /v1/models/cifar10:predict, {"instances": [{"b64": <the JPEG file>}]}
    v2_bytes       POST /v2/models/cifar10/infer, the JPEG file as the BYTES input image_bytes (binary extension)
    raw_jpeg       POST /predict with the JPEG file as the body (Content-Type: image/jpeg)
    multipart      POST /predict, the JPEG file as a multipart/form-data upload

and TF Serving's gRPC API with `tensorflow_serving.apis`' PredictionServiceStub (grpc.aio: that many concurrent
calls from one Python process; tensor_content FP32). Reports requests/s, p50/p90/p99 latency, the answers by
status, and the server's CPU seconds per request (its /proc/PID/stat user+system time over the run). wrk, the
Python gRPC client and the server share the machine's cores: on 2 cores the load generator takes a share of the
CPU the server could use.
"""

import argparse
import asyncio
import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

WRK_SCRIPT = r"""
wrk.method = "POST"
%(headers)s
local file = io.open("%(body)s", "rb"); wrk.body = file:read("*all"); file:close()
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; no_retry_after = 0 end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
    no_retry_after = no_retry_after + 1
  end
end
function done(summary, latency, requests)
  local counts, missing = {}, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do counts[status] = (counts[status] or 0) + count end
    missing = missing + thread:get("no_retry_after")
  end
  local parts = {}
  for status, count in pairs(counts) do table.insert(parts, string.format('"%%d": %%d', status, count)) end
  local errors = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "socket_errors": %%d, "timeouts": %%d, "statuses": {%%s}, "no_retry_after": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, errors.connect + errors.read + errors.write, errors.timeout, table.concat(parts, ", "), missing))
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str, extra: list) -> tuple:
    port, grpc_port = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "imagerec", "serve", model, "--port", str(port),
                               "--grpc-port", str(grpc_port), *extra],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(480):
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return server, url, f"127.0.0.1:{grpc_port}"
        except OSError:
            if server.poll() is not None:
                sys.exit("the server exited")
            time.sleep(0.5)
    sys.exit("the server did not start")


def test_image() -> tuple:
    """(uint8 32x32x3 pixels, their JPEG file): the first CIFAR-10 (JPEG copy) test image when the archive is at
    hand, else a synthetic one (the cost per request does not depend on the picture)."""
    from PIL import Image

    archive = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    if archive.exists():
        import tarfile

        with tarfile.open(archive) as tar:
            for member in tar:
                if "/test/" in f"/{member.name}" and member.name.endswith(".jpg"):
                    jpeg = tar.extractfile(member).read()
                    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")), jpeg
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return pixels, buffer.getvalue()


def _binary_v2(pixels: np.ndarray, name: str, datatype: str, dtype) -> tuple:
    data = pixels[None].astype(dtype).tobytes()
    header = json.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": [1, *pixels.shape],
                                     "parameters": {"binary_data_size": len(data)}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"}


def enlarged_jpeg(pixels: np.ndarray, side: int) -> bytes:
    """The test image as a side x side JPEG (quality 90): a photo's size, for the bodies that carry files."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((side, side), Image.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _binary_v2_file(jpeg: bytes) -> tuple:
    data = len(jpeg).to_bytes(4, "little") + jpeg  # Triton's BYTES element: its length, then the bytes
    header = json.dumps({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"}


def bodies(pixels: np.ndarray, jpeg: bytes) -> dict:
    """{name: (path, body, headers)} of every request body measured."""
    boundary = "imagerecbenchmarkboundary"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.jpg\"\r\n"
                 f"Content-Type: image/jpeg\r\n\r\n").encode() + jpeg + f"\r\n--{boundary}--\r\n".encode()
    json_headers = {"Content-Type": "application/json"}
    v2_json = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, *pixels.shape],
                           "data": pixels.astype(float).ravel().tolist()}]}
    return {
        "v2_binary": ("/v2/models/cifar10/infer", *_binary_v2(pixels, "image", "FP32", "<f4")),
        "v2_binary_u8": ("/v2/models/cifar10/infer", *_binary_v2(pixels, "image_uint8", "UINT8", "u1")),
        "v2_json": ("/v2/models/cifar10/infer", json.dumps(v2_json).encode(), json_headers),
        "tfs_json": ("/v1/models/cifar10:predict", json.dumps({"instances": [pixels.tolist()]}).encode(), json_headers),
        "tfs_b64": ("/v1/models/cifar10:predict", json.dumps(
            {"instances": [{"b64": base64.b64encode(jpeg).decode()}]}).encode(), json_headers),
        "v2_bytes": ("/v2/models/cifar10/infer", *_binary_v2_file(jpeg)),
        "raw_jpeg": ("/predict", jpeg, {"Content-Type": "image/jpeg"}),
        "multipart": ("/predict", multipart, {"Content-Type": f"multipart/form-data; boundary={boundary}"}),
    }


def wait_until_idle(url: str, timeout_s: float = 60.0) -> None:
    """Until /metrics shows no request at work or queued: wrk stops at its deadline with requests in flight,
    which the server still answers, and the next level must not start behind them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
        busy = re.findall(r"^imagerec_(?:requests_at_work|queue_depth) (\S+)$", text, re.M)
        if all(float(value) == 0 for value in busy):
            return
        time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, path: str, body: bytes, headers: dict, connections: int, duration_s: float,
            workdir: Path, server_pid: int) -> dict:
    body_file = workdir / f"body-{abs(hash(body))}.bin"
    body_file.write_bytes(body)
    script = workdir / "script.lua"
    script.write_text(WRK_SCRIPT % {"body": body_file, "headers": "\n".join(
        f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items())})
    threads = min(2, connections)
    cpu_before = cpu_seconds(server_pid)
    output = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s",
                             "--timeout", "30s", "--latency", "-s", str(script), f"{url}{path}"],
                            capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server_pid) - cpu_before
    result = json.loads(re.search(r"^RESULT (.*)$", output, re.M).group(1))
    seconds = result["duration_us"] / 1e6
    return {"requests": result["requests"], "requests_s": result["requests"] / seconds,
            "p50_ms": result["p50_us"] / 1000, "p90_ms": result["p90_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
            "max_ms": result["max_us"] / 1000, "statuses": result["statuses"],
            "socket_errors": result["socket_errors"], "timeouts": result["timeouts"],
            "503_without_retry_after": result["no_retry_after"],
            "server_cpu_ms_per_request": 1000 * cpu / max(1, result["requests"])}


async def grpc_load(address: str, pixels: np.ndarray, connections: int, duration_s: float, server_pid: int) -> dict:
    """`connections` concurrent Predict calls back to back over one grpc.aio channel, for `duration_s`."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "cifar10"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(pixels[None].astype(np.float32)))
    latencies, codes = [], {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        await stub.Predict(request, timeout=30)  # connected
        cpu_before, started = cpu_seconds(server_pid), time.perf_counter()

        async def client():
            while time.perf_counter() - started < duration_s:
                sent = time.perf_counter()
                try:
                    await stub.Predict(request, timeout=30)
                    code = "OK"
                except grpc.aio.AioRpcError as error:
                    code = error.code().name
                latencies.append(time.perf_counter() - sent)
                codes[code] = codes.get(code, 0) + 1

        await asyncio.gather(*(client() for _ in range(connections)))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(server_pid) - cpu_before
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99]) * 1000
    return {"requests": len(latencies), "requests_s": len(latencies) / elapsed, "p50_ms": p50, "p90_ms": p90,
            "p99_ms": p99, "max_ms": max(latencies) * 1000, "statuses": codes,
            "server_cpu_ms_per_request": 1000 * cpu / max(1, len(latencies))}


def table(results: list) -> str:
    lines = ["| protocol | connections | requests | requests/s | p50 ms | p90 ms | p99 ms | answers | server CPU ms/req |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for row in results:
        statuses = ", ".join(f"{count} x {status}" for status, count in sorted(row["statuses"].items()))
        extra = "".join(f"; {row[key]} {label}" for key, label in (
            ("socket_errors", "socket errors"), ("timeouts", "timeouts"), ("503_without_retry_after",
                                                                           "503 without Retry-After"))
            if row.get(key))
        lines.append(f"| {row['body']} | {row['connections']} | {row['requests']} | {row['requests_s']:.1f} | "
                     f"{row['p50_ms']:.1f} | {row['p90_ms']:.1f} | {row['p99_ms']:.1f} | {statuses}{extra} | "
                     f"{row['server_cpu_ms_per_request']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run directory or model file, as for `imagerec serve`")
    parser.add_argument("--bodies", nargs="+", default=["v2_binary", "v2_binary_u8", "v2_json", "tfs_json",
                                                        "tfs_b64", "v2_bytes", "raw_jpeg", "multipart", "grpc"])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32, 200])
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--image-side", type=int, default=None,
                        help="send the file bodies (tfs_b64, v2_bytes, raw_jpeg, multipart) as a JPEG this many "
                             "pixels square (default: the 32x32 test file itself)")
    parser.add_argument("--server-option", action="append", default=[], help="passed to `imagerec serve`")
    parser.add_argument("--json-out", default=None)
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    pixels, jpeg = test_image()
    if arguments.image_side:
        jpeg = enlarged_jpeg(pixels, arguments.image_side)
    server, url, grpc_address = start_server(arguments.model, arguments.server_option)
    results = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for name in arguments.bodies:
                for connections in arguments.connections:
                    if name == "grpc":
                        row = asyncio.run(grpc_load(grpc_address, pixels, connections, arguments.duration_s,
                                                    server.pid))
                    else:
                        path, body, headers = bodies(pixels, jpeg)[name]
                        row = run_wrk(url, path, body, headers, connections, arguments.duration_s, Path(workdir),
                                      server.pid)
                    results.append({"body": name, "connections": connections, **row})
                    wait_until_idle(url)
                    print(table(results[-1:]).splitlines()[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(table(results))
    if arguments.json_out:
        Path(arguments.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
