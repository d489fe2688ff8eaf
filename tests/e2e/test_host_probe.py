"""ServiceHost's readiness probe: after warm-up, health follows what the probe says (polled), for
each service and for the server as a whole; calls are still let through."""

from __future__ import annotations

import threading
import time

from grpc_health.v1 import health_pb2

from tests.e2e.test_servers import DIARIZATION, ScriptedDiarizer, diarize, diarizer_service
from tests.support.servers import health_status, wait_for_health

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Switch:
    """A probe the test flips: None (ready) or the reason it is not."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> str | None:
        with self.lock:
            self.calls += 1
        if self.reason == "raise":
            raise RuntimeError("probe crashed")
        return self.reason


def probed_service(probe: Switch, warm_up=None):
    service = diarizer_service(ScriptedDiarizer(), warm_up=warm_up)
    return type(service)(
        name=service.name,
        register=service.register,
        warm_up=service.warm_up,
        probe=probe,
        probe_interval_s=0.1,
    )


def test_health_follows_the_probe_after_warm_up_and_calls_pass(start_host, caplog) -> None:
    warm = threading.Event()
    probe = Switch("the backend is warming up")
    host = start_host([probed_service(probe, warm_up=lambda: warm.wait(10))])
    assert health_status(host.address, DIARIZATION) == NOT_SERVING
    assert probe.calls == 0, "the probe is asked only once the service itself is warm"

    warm.set()
    assert host.wait_until_warm(5)
    assert probe.calls >= 1
    assert health_status(host.address, DIARIZATION) == NOT_SERVING
    assert health_status(host.address) == NOT_SERVING
    # Not a gate: the call reaches the servicer (which would report its dependency's error).
    assert diarize(host.address, num_speakers=3).num_speakers == 3

    probe.reason = None
    wait_for_health(host.address, DIARIZATION, timeout=5)
    wait_for_health(host.address, "", timeout=5)

    probe.reason = "the backend drained"
    wait_for_health(host.address, DIARIZATION, want=NOT_SERVING, timeout=5)
    assert health_status(host.address) == NOT_SERVING
    assert any("is not ready: the backend drained" in record.getMessage() for record in caplog.records)

    probe.reason = None
    wait_for_health(host.address, DIARIZATION, timeout=5)
    probe.reason = "raise"  # a probe that raises says "not ready"
    wait_for_health(host.address, DIARIZATION, want=NOT_SERVING, timeout=5)
    assert any(
        "is not ready: its readiness probe failed (RuntimeError); see the server log" in record.getMessage()
        for record in caplog.records
    )


def test_drain_stops_polling_the_probe(start_host) -> None:
    probe = Switch(None)
    host = start_host([probed_service(probe)])
    wait_for_health(host.address, DIARIZATION, timeout=5)
    host.drain(0.5)
    calls = probe.calls
    time.sleep(0.5)
    assert probe.calls <= calls + 1  # at most the round that was under way
