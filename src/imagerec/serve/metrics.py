"""`GET /metrics`: the server's counters in Prometheus' text format (prometheus_client), as Triton and TF Serving
export theirs. One registry per app (not the process-wide default), so two apps in one process never mix."""

import time

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServeMetrics:
    """What the server counts. Stages of `imagerec_request_duration_seconds`: `admission` (waiting for a work slot),
    `queue` (waiting for the model thread), `inference` (the model call a request was part of), `total` (from
    arrival to the last byte of the answer handed to the server)."""

    def __init__(self, admission):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("imagerec_requests", "Requests answered, by route (or gRPC method) and status",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("imagerec_request_duration_seconds", "Time a request spent in each stage",
                                 ["stage"], buckets=LATENCY_BUCKETS_S, registry=registry)
        self.batch_size = Histogram("imagerec_batch_size", "Images per model call", buckets=BATCH_BUCKETS,
                                    registry=registry)
        self.images_decoded = Counter("imagerec_images_decoded", "Image files decoded", registry=registry)
        self.images_inferred = Counter("imagerec_images_inferred", "Images run through the model",
                                       registry=registry)
        self.bytes_received = Counter("imagerec_request_body_bytes", "Request-body bytes received (HTTP bodies and "
                                      "gRPC messages)", registry=registry)
        Gauge("imagerec_queue_depth", "Requests waiting for a work slot", registry=registry).set_function(
            lambda: admission.waiting)
        Gauge("imagerec_requests_at_work", "Requests holding a work slot", registry=registry).set_function(
            lambda: admission.active)

    def answered(self, route: str, status, started: float) -> None:
        """One request answered `status` (an HTTP code or a gRPC status name), `started` on perf_counter()."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels("total").observe(time.perf_counter() - started)

    def batch_run(self, sizes: list, waits_s: list, inference_s: float) -> None:
        """One model call over requests of `sizes` images that waited `waits_s` for it."""
        self.batch_size.observe(sum(sizes))
        self.images_inferred.inc(sum(sizes))
        for wait in waits_s:
            self.latency.labels("queue").observe(wait)
            self.latency.labels("inference").observe(inference_s)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
