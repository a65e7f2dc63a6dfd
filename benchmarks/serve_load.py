"""Benchmark: requests/s and latency of `imagerec serve` under load, with and without request batching.

    python benchmarks/serve_load.py runs/airbench-small --concurrency 1 8 32 --duration-s 15 --max-requests 3000
    python benchmarks/serve_load.py runs/airbench-small --modes batched --concurrency 200 --slow-clients 100 \
        --parse-load 32

`--slow-clients N` first opens N connections that start a request and stop (a quarter mid-headers, the rest
after one byte of a declared 1,000-byte body), then sends 20 valid requests from other clients and reports their
statuses and slowest latency, and how long the server takes to cut the slow ones off. `--parse-load N` sends N
concurrent ~15 MB JSON bodies (256 instances of float pixels each) while polling `GET /healthz` every 20 ms,
and reports the health check's latency percentiles and the server's peak resident memory (VmHWM).
`--scan-bombs N` sends N progressive-JPEG scan bombs (tests/hostile_files.py: 223 KB, one refinement scan
repeated 1,000 times, ~36 s of libjpeg each on ae0f579) to `/predict`, two attackers back to back, while 8
clients send valid requests for 15 s, and reports the valid requests' latency and the bombs' statuses.
`--big-bodies N` has N clients each send a ~15.9 MB JSON body at once, and reports their statuses and the
server's peak resident memory (the server-wide `--max-pending-mb` budget).

Starts the real server (uvicorn, loopback only) once per mode, then for each concurrency level runs that many
clients, each sending TF Serving REST requests (`POST /v1/models/cifar10:predict`, or `:explain` with
`--verb explain`, one 32x32 test image as a
JSON pixel array) back to back, until --duration-s or --max-requests, whichever comes first. Reports
requests/s, p50/p95/p99 latency as the client sees it, the same percentiles of the server's own time (its
`Server-Timing` header: from the request reaching the app to the response starting), and errors per level.
Client and server share the machine's cores (on a 2-core box the client costs a share of the CPU the server
could use, and a single-process client adds its own queueing to the tail), so the figures are a lower bound
on what the server does alone. Request bodies are encoded before timing starts.
"""

import argparse
import asyncio
import collections
import concurrent.futures
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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


async def load(url: str, bodies: list, concurrency: int, duration_s: float, max_requests: int,
               verb: str = "predict") -> dict:
    latencies, server_ms, statuses, sent = [], [], collections.Counter(), 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        stop_at = time.perf_counter() + duration_s

        async def client_loop(worker: int):
            nonlocal sent
            while time.perf_counter() < stop_at and sent < max_requests:
                body = bodies[(worker + sent) % len(bodies)]
                sent += 1
                started = time.perf_counter()
                try:
                    response = await client.post(f"/v1/models/cifar10:{verb}", content=body,
                                                 headers={"Content-Type": "application/json"})
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        server_ms.append(float(response.headers["server-timing"].split("dur=")[1]))
                except httpx.HTTPError:
                    statuses["connection error"] += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(worker) for worker in range(concurrency)))
        wall_s = time.perf_counter() - started
    milliseconds = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(latencies) - statuses[200],
            "share_503": round(statuses[503] / max(1, len(latencies)), 4),
            "statuses": {str(status): count for status, count in sorted(statuses.items(), key=str)},
            "wall_s": round(wall_s, 2), "requests_per_s": round(len(latencies) / wall_s, 1),
            **{f"p{q}_ms": round(float(np.percentile(milliseconds, q)), 1) for q in (50, 95, 99)},
            **{f"server_p{q}_ms": round(float(np.percentile(server_ms, q)), 1) if server_ms else None
               for q in (50, 95, 99)}}


def slow_clients(url: str, count: int, body: bytes, valid: int = 20, wait_s: float = 30.0) -> dict:
    """`count` stalled requests, then `valid` good ones from other clients; then how the stalled ones end."""
    host, port = url.removeprefix("http://").split(":")
    stalled = []
    for index in range(count):
        connection = socket.create_connection((host, int(port)), timeout=60)
        connection.sendall(b"POST /v1/models/cifar10:predict HTTP/1.1\r\nHost: x\r\n" + (
            b"X-Slow: 1" if index % 4 == 0 else b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"))
        stalled.append(connection)
    opened = time.perf_counter()
    time.sleep(0.5)

    def one_request(_):
        started = time.perf_counter()
        call = urllib.request.Request(url + "/v1/models/cifar10:predict", data=body, method="POST",
                                      headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(call, timeout=60) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError:
            status = "connection error"
        return status, time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(valid) as pool:
        answers = list(pool.map(one_request, range(valid)))
    endings = collections.Counter()
    for connection in stalled:
        connection.settimeout(max(0.1, opened + wait_s - time.perf_counter()))
        try:
            reply = connection.recv(64)
            endings["408" if reply.startswith(b"HTTP/1.1 408") else "closed" if not reply else reply[:12].decode()] += 1
        except OSError:
            endings[f"still open after {wait_s:g} s"] += 1
        connection.close()
    return {"slow_clients": count, "valid_requests": valid,
            "valid_statuses": dict(collections.Counter(str(status) for status, _ in answers)),
            "valid_slowest_s": round(max(seconds for _, seconds in answers), 3),
            "slow_clients_ended_after_s": round(time.perf_counter() - opened, 1), "slow_clients_ended": dict(endings)}


def big_body() -> bytes:
    """A ~15.9 MB TF Serving body: 256 instances of float pixels (float64 reprs: ~18 characters per number)."""
    pixels = (np.random.default_rng(0).random((256, 32, 32, 3)) * 255).tolist()
    return json.dumps({"instances": pixels}).encode()


async def post_counted(client, body: bytes, statuses: collections.Counter) -> None:
    """POST `body` to the predict route, counting its status (or a connection error) in `statuses`."""
    try:
        response = await client.post("/v1/models/cifar10:predict", content=body,
                                     headers={"Content-Type": "application/json"})
        statuses[response.status_code] += 1
    except httpx.HTTPError:
        statuses["connection error"] += 1


# Polls GET /healthz every 20 ms over one keep-alive connection until stdin closes; prints the latencies (ms).
HEALTH_POLLER = """
import http.client, json, select, sys, time
host, port = sys.argv[1].rsplit(":", 1)
connection, latencies = http.client.HTTPConnection(host, int(port), timeout=60), []
while not select.select([sys.stdin], [], [], 0.02)[0]:
    started = time.perf_counter()
    connection.request("GET", "/healthz")
    connection.getresponse().read()
    latencies.append(1000 * (time.perf_counter() - started))
print(json.dumps(latencies))
"""


def start_health_poller(url: str):
    """A separate process polling /healthz: its latencies are the server's, not the busy load client's."""
    return subprocess.Popen([sys.executable, "-c", HEALTH_POLLER, url.removeprefix("http://")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def health_poller_result(poller) -> dict:
    latencies = json.loads(poller.communicate("stop\n", timeout=60)[0])
    return {"poller_checks": len(latencies), **{f"poller_p{q}_ms": round(float(np.percentile(latencies, q)), 1)
                                                for q in (50, 99)}, "poller_max_ms": round(max(latencies), 1)}


async def parse_load(url: str, count: int, server_pid: int) -> dict:
    """`count` concurrent ~15 MB JSON bodies while /healthz is polled every 20 ms, by the load client itself and
    by a separate process (the load client's own event loop is busy sending 500 MB: its polls wait on it too)."""
    body = big_body()
    health_ms, statuses = [], collections.Counter()
    poller_process = start_health_poller(url)
    await asyncio.sleep(0.5)  # the poller is running
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=count + 1)) as client:
        done = asyncio.Event()

        async def poll():
            while not done.is_set():
                started = time.perf_counter()
                await client.get("/healthz")
                health_ms.append(1000 * (time.perf_counter() - started))
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        started = time.perf_counter()
        await asyncio.gather(*(post_counted(client, body, statuses) for _ in range(count)))
        wall_s = time.perf_counter() - started
        done.set()
        await poller
    return {"bodies": count, "body_mb": round(len(body) / 1e6, 1), "statuses": dict(statuses),
            "wall_s": round(wall_s, 1), "healthz_checks": len(health_ms),
            **{f"healthz_p{q}_ms": round(float(np.percentile(health_ms, q)), 1) for q in (50, 99)},
            "healthz_max_ms": round(max(health_ms), 1), **health_poller_result(poller_process),
            "server_peak_rss_mb": peak_rss_mb(server_pid)}


async def scan_bombs(url: str, bodies: list, count: int, clients: int = 8, duration_s: float = 15.0) -> dict:
    """`count` scan bombs from 2 attackers while `clients` send valid requests for `duration_s`."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import hostile_files

    bomb = hostile_files.scan_bomb()
    statuses, bomb_seconds = collections.Counter(), []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        remaining = [count]

        async def attacker():
            while remaining[0] > 0:
                remaining[0] -= 1
                started = time.perf_counter()
                response = await client.post("/predict", files={"file": ("bomb.jpg", bomb, "image/jpeg")})
                statuses[response.status_code] += 1
                bomb_seconds.append(time.perf_counter() - started)

        valid, _, _ = await asyncio.gather(load(url, bodies, clients, duration_s, 10**9), attacker(), attacker())
    return {"scan_bombs": count, "bomb_bytes": len(bomb), "bomb_statuses": dict(statuses),
            "bomb_slowest_s": round(max(bomb_seconds), 3), "valid": valid}


async def big_bodies(url: str, count: int, server_pid: int) -> dict:
    """`count` clients each sending a ~15.9 MB JSON body at once."""
    body, statuses = big_body(), collections.Counter()
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=count)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(post_counted(client, body, statuses) for _ in range(count)))
    return {"big_bodies": count, "body_mb": round(len(body) / 1e6, 1), "statuses": dict(statuses),
            "wall_s": round(time.perf_counter() - started, 1), "server_peak_rss_mb": peak_rss_mb(server_pid)}


def peak_rss_mb(pid: int):
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        return None
    return None


def request_bodies(count: int) -> list:
    """TF Serving bodies of one random 32x32 image each (the model's cost does not depend on the pixels)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 32, 32, 3))
    return [json.dumps({"instances": [image.tolist()]}).encode() for image in images]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run directory or model file, as for `imagerec serve`")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--verb", choices=("predict", "explain"), default="predict",
                        help="the TF Serving route loaded: :predict, or :explain (Grad-CAM per image)")
    parser.add_argument("--duration-s", type=float, default=15.0, help="per level (default 15)")
    parser.add_argument("--max-requests", type=int, default=3000, help="per level (default 3000)")
    parser.add_argument("--modes", nargs="+", choices=("batched", "unbatched"), default=["batched", "unbatched"])
    parser.add_argument("--slow-clients", type=int, default=0, help="also run the slow-client scenario")
    parser.add_argument("--parse-load", type=int, default=0, help="also run the parse-load scenario")
    parser.add_argument("--scan-bombs", type=int, default=0, help="also run the scan-bomb scenario")
    parser.add_argument("--big-bodies", type=int, default=0, help="also run the big-bodies scenario")
    parser.add_argument("--server-option", action="append", default=[],
                        help="extra `imagerec serve` option, e.g. --server-option=--batch-window-ms=5")
    parser.add_argument("--json-out", default=None, help="also write the results here")
    arguments = parser.parse_args()
    bodies = request_bodies(64)
    results = []
    for mode in arguments.modes:
        server, url = start_server(arguments.model, mode == "batched", arguments.server_option)
        try:
            asyncio.run(load(url, bodies, 4, 3.0, 200, arguments.verb))  # warm-up: graph tracing, connection pools
            for concurrency in arguments.concurrency:
                results.append({"mode": mode, "verb": arguments.verb, **asyncio.run(load(
                    url, bodies, concurrency, arguments.duration_s, arguments.max_requests, arguments.verb))})
                print(json.dumps(results[-1]), flush=True)
            if arguments.slow_clients:
                results.append({"mode": mode, **slow_clients(url, arguments.slow_clients, bodies[0])})
                print(json.dumps(results[-1]), flush=True)
            if arguments.parse_load:
                results.append({"mode": mode, **asyncio.run(parse_load(url, arguments.parse_load, server.pid))})
                print(json.dumps(results[-1]), flush=True)
            if arguments.scan_bombs:
                results.append({"mode": mode, **asyncio.run(scan_bombs(url, bodies, arguments.scan_bombs))})
                print(json.dumps(results[-1]), flush=True)
            if arguments.big_bodies:  # last: its peak memory is the server's peak over every scenario before
                results.append({"mode": mode, **asyncio.run(big_bodies(url, arguments.big_bodies, server.pid))})
                print(json.dumps(results[-1]), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("\n| mode | clients | requests | errors | 503 share | requests/s | p50 ms | p95 ms | p99 ms | "
          "server p50 / p95 / p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        if "concurrency" in row:
            print(f"| {row['mode']} | {row['concurrency']} | {row['requests']} | {row['errors']} | "
                  f"{100 * row['share_503']:.1f}% | {row['requests_per_s']} | {row['p50_ms']} | {row['p95_ms']} | "
                  f"{row['p99_ms']} | {row['server_p50_ms']} / {row['server_p95_ms']} / {row['server_p99_ms']} |")
    if arguments.json_out:
        with open(arguments.json_out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
