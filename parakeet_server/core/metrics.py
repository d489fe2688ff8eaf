"""Prometheus metrics shared by every service (prometheus-client), registered once per process.

Requests and errors by method and status code, latency, requests in flight, audio seconds
processed, micro-batch queue depth and batch sizes. `parakeet-server --metrics-port N` serves
them at http://HOST:N/metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter("parakeet_requests_total", "RPCs answered, by method and status code", ["method", "code"])
LATENCY = Histogram(
    "parakeet_request_seconds",
    "RPC wall time, by method",
    ["method"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
IN_FLIGHT = Gauge("parakeet_requests_in_flight", "RPCs being served now, by method", ["method"])
AUDIO_SECONDS = Counter("parakeet_audio_seconds_total", "Seconds of audio processed, by service", ["service"])
QUEUE_DEPTH = Gauge(
    "parakeet_batch_queue_depth", "Requests waiting for a micro-batch, by batcher", ["batcher"]
)
BATCH_SIZE = Histogram(
    "parakeet_batch_size",
    "Requests per forward pass, by batcher",
    ["batcher"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Expose /metrics over HTTP on `port` (a daemon thread)."""
    start_http_server(port, addr=host)
