"""Benchmark: requests/s and latency of `imagerec serve` under load, with and without request batching.

    python benchmarks/serve_load.py runs/fast-small --concurrency 1 8 32 --duration-s 15 --max-requests 3000

Starts the real server (uvicorn, loopback only) once per mode, then for each concurrency level runs that many
clients, each sending TF Serving REST requests (`POST /v1/models/cifar10:predict`, one 32x32 test image as a
JSON pixel array) back to back, until --duration-s or --max-requests, whichever comes first. Reports
requests/s, p50/p95/p99 latency as the client sees it, the same percentiles of the server's own time (its
`Server-Timing` header: from the request reaching the app to the response starting), and errors per level.
Client and server share the machine's cores (on a 2-core box the client costs a share of the CPU the server
could use, and a single-process client adds its own queueing to the tail), so the figures are a lower bound
on what the server does alone. Request bodies are encoded before timing starts.
"""

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str, batching: bool, extra: list) -> tuple:
    port = free_port()
    command = [sys.executable, "-m", "imagerec", "serve", model, "--port", str(port), *extra]
    if not batching:
        command.append("--no-batching")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode}; try `imagerec serve {model}`")
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("the server did not start within 120 s")


async def load(url: str, bodies: list, concurrency: int, duration_s: float, max_requests: int) -> dict:
    latencies, server_ms, errors, sent = [], [], 0, 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        stop_at = time.perf_counter() + duration_s

        async def client_loop(worker: int):
            nonlocal errors, sent
            while time.perf_counter() < stop_at and sent < max_requests:
                body = bodies[(worker + sent) % len(bodies)]
                sent += 1
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/models/cifar10:predict", content=body,
                                                 headers={"Content-Type": "application/json"})
                    ok = response.status_code == 200
                    server_ms.append(float(response.headers["server-timing"].split("dur=")[1]))
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(worker) for worker in range(concurrency)))
        wall_s = time.perf_counter() - started
    milliseconds = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "wall_s": round(wall_s, 2),
            "requests_per_s": round(len(latencies) / wall_s, 1),
            **{f"p{q}_ms": round(float(np.percentile(milliseconds, q)), 1) for q in (50, 95, 99)},
            **{f"server_p{q}_ms": round(float(np.percentile(server_ms, q)), 1) for q in (50, 95, 99)}}


def request_bodies(count: int) -> list:
    """TF Serving bodies of one random 32x32 image each (the model's cost does not depend on the pixels)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 32, 32, 3))
    return [json.dumps({"instances": [image.tolist()]}).encode() for image in images]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run directory or model file, as for `imagerec serve`")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration-s", type=float, default=15.0, help="per level (default 15)")
    parser.add_argument("--max-requests", type=int, default=3000, help="per level (default 3000)")
    parser.add_argument("--modes", nargs="+", choices=("batched", "unbatched"), default=["batched", "unbatched"])
    parser.add_argument("--server-option", action="append", default=[],
                        help="extra `imagerec serve` option, e.g. --server-option=--batch-window-ms=5")
    parser.add_argument("--json-out", default=None, help="also write the results here")
    arguments = parser.parse_args()
    bodies = request_bodies(64)
    results = []
    for mode in arguments.modes:
        server, url = start_server(arguments.model, mode == "batched", arguments.server_option)
        try:
            asyncio.run(load(url, bodies, 4, 3.0, 200))  # warm-up: graph tracing, connection pools
            for concurrency in arguments.concurrency:
                row = {"mode": mode, **asyncio.run(load(url, bodies, concurrency, arguments.duration_s,
                                                        arguments.max_requests))}
                results.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("\n| mode | clients | requests | errors | requests/s | p50 ms | p95 ms | p99 ms | server p50 / p95 / p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        print(f"| {row['mode']} | {row['concurrency']} | {row['requests']} | {row['errors']} | "
              f"{row['requests_per_s']} | {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | "
              f"{row['server_p50_ms']} / {row['server_p95_ms']} / {row['server_p99_ms']} |")
    if arguments.json_out:
        with open(arguments.json_out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
