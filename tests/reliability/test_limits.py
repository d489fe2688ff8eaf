"""Limits and invariants that need no model: the concurrency limit of the shared interceptor (with
explicit and default options), the decoder's promise about its samples, downloads after the
caller's deadline, and the metric names docs/reliability.md lists."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from parakeet.v1 import transcription_pb2, transcription_pb2_grpc
from parakeet_server.core import metrics
from parakeet_server.core.audio import AudioLimits, decode_bytes
from parakeet_server.core.grpc_server import HostedService, ServerOptions, ServiceHost
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.reliability import media
from tests.reliability.conftest import Loopback, ResolverGuard
from tests.reliability.scripted import ScriptedTranscriber
from tests.support.servers import REPO_ROOT, VENV_BIN, wait_for_health

SERVICE = "parakeet.v1.TranscriptionService"


class Blocking(transcription_pb2_grpc.TranscriptionServiceServicer):
    """Every call waits until `release` is set (at most 10 s)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def Transcribe(
        self, request: transcription_pb2.TranscribeRequest, context: grpc.ServicerContext
    ) -> transcription_pb2.TranscribeResponse:
        self.release.wait(10)
        return transcription_pb2.TranscribeResponse(text="done")


@pytest.fixture
def blocking_server(request: pytest.FixtureRequest) -> Iterator[tuple[Blocking, str]]:
    """A real gRPC server (ServiceHost) hosting `Blocking` with the options the test names."""
    servicer = Blocking()

    def register(server: grpc.Server) -> None:
        transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(servicer, server)

    options: dict[str, int] = request.param
    host = ServiceHost(
        [HostedService(SERVICE, register)], ServerOptions(host="127.0.0.1", port=0, grace_s=0.5, **options)
    )
    host.start()
    wait_for_health(host.address, SERVICE, timeout=30)
    yield servicer, host.address
    servicer.release.set()
    host.drain(0.5)


def answers_within(address: str, calls: int, seconds: float) -> Counter[tuple[str, str]]:
    """Start `calls` calls at once; (code, message) of those that finished within `seconds`."""
    finished: Counter[tuple[str, str]] = Counter()
    with grpc.insecure_channel(address) as channel:
        stub = transcription_pb2_grpc.TranscriptionServiceStub(channel)
        futures = [
            stub.Transcribe.future(transcription_pb2.TranscribeRequest(), timeout=20) for _ in range(calls)
        ]
        time.sleep(seconds)
        for future in futures:
            if future.done():
                error = future.exception()
                finished[(error.code().name, error.details()) if error is not None else ("OK", "")] += 1
        for future in futures:
            future.cancel()
    return finished


def refusal(limit: int) -> tuple[str, str]:
    message = f"the server is serving its limit of {limit} concurrent requests; retry with backoff"
    return ("RESOURCE_EXHAUSTED", message)


@pytest.mark.parametrize(
    "blocking_server", [{"max_workers": 12, "max_concurrent_requests": 4}], indirect=True
)
def test_calls_beyond_the_concurrency_limit_are_refused_at_once_with_resource_exhausted(
    blocking_server: tuple[Blocking, str],
) -> None:
    _servicer, address = blocking_server
    assert answers_within(address, calls=10, seconds=1.0) == Counter({refusal(4): 6})


@pytest.mark.parametrize("blocking_server", [{}], indirect=True)
def test_with_default_options_calls_beyond_the_limit_are_refused_not_queued_in_grpcio(
    blocking_server: tuple[Blocking, str],
) -> None:
    _servicer, address = blocking_server
    limit = ServerOptions().max_concurrent_requests
    assert answers_within(address, calls=limit + 16, seconds=1.5) == Counter({refusal(limit): 16})


def test_decoded_samples_are_finite_and_within_one_even_from_a_float_wav_of_nan() -> None:
    samples = decode_bytes(media.nan_wav()).samples
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0


def test_decoded_samples_of_infinities_are_clipped_to_one() -> None:
    samples = decode_bytes(media.float_wav(np.full(1600, np.inf))).samples
    assert np.isfinite(samples).all() and float(samples.max()) == 1.0


def exposed_metric_names() -> list[str]:
    names = []
    for value in vars(metrics).values():
        if hasattr(value, "describe") and hasattr(value, "_name"):
            names += [
                family.name + ("_total" if family.type == "counter" else "") for family in value.describe()
            ]
    return sorted(names)


def test_docs_name_every_metric_the_services_export() -> None:
    names = exposed_metric_names()
    assert len(names) == 6, names
    document = (REPO_ROOT / "docs" / "reliability.md").read_text()
    assert [name for name in names if f"`{name}`" not in document] == []


@pytest.fixture
def scripted_transcription() -> Iterator[TranscriptionServicer]:
    """The real TranscriptionServicer (fetch, decode, validation) over a scripted engine."""
    runner = TranscriptionRunner(ScriptedTranscriber())
    yield TranscriptionServicer(runner)
    runner.close()


def test_a_download_stops_when_the_callers_deadline_passes(
    loopback: Loopback,
    resolver_guard: ResolverGuard,
    scripted_transcription: TranscriptionServicer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A URL that trickles bytes (never slow enough for a read timeout) must not keep a worker
    thread downloading after the caller has gone."""
    monkeypatch.setenv("PARAKEET_FETCH_ALLOW", "127.0.0.1")

    def register(server: grpc.Server) -> None:
        transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(scripted_transcription, server)

    host = ServiceHost(
        [HostedService(SERVICE, register)], ServerOptions(host="127.0.0.1", port=0, grace_s=0.2)
    )
    host.start()
    try:
        wait_for_health(host.address, SERVICE, timeout=30)
        before = len(loopback.hits)
        with grpc.insecure_channel(host.address) as channel, pytest.raises(grpc.RpcError) as failure:
            transcription_pb2_grpc.TranscriptionServiceStub(channel).Transcribe(
                transcription_pb2.TranscribeRequest(audio={"uri": f"{loopback.url}/trickle"}), timeout=1.0
            )
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline_passed = time.monotonic()
        while time.monotonic() - deadline_passed < 2.0 and not any(
            hit.startswith("/trickle closed") for hit in loopback.hits_since(before)
        ):
            time.sleep(0.05)
        closed = [hit for hit in loopback.hits_since(before) if hit.startswith("/trickle closed")]
        assert closed, "the download went on after the caller's deadline"
    finally:
        host.drain(0.2)


# -- the reason of an over-limit call, as grpcurl shows it -----------------------------------------


def grpcurl_error(address: str, request: dict[str, object]) -> str:
    """What grpcurl prints for a failed Transcribe: code, message and the status details."""
    result = subprocess.run(
        [
            str(VENV_BIN / "grpcurl"),
            "-plaintext",
            "-d",
            json.dumps(request),
            address,
            f"{SERVICE}/Transcribe",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and result.stdout == "", result
    return result.stderr


@pytest.mark.parametrize("blocking_server", [{"max_concurrent_requests": 1}], indirect=True)
def test_grpcurl_shows_the_concurrency_limits_error_info(blocking_server: tuple[Blocking, str]) -> None:
    _servicer, address = blocking_server
    with grpc.insecure_channel(address) as channel:
        holder = transcription_pb2_grpc.TranscriptionServiceStub(channel).Transcribe.future(
            transcription_pb2.TranscribeRequest(), timeout=20
        )
        deadline = time.monotonic() + 10
        while metrics.IN_FLIGHT.labels("Transcribe")._value.get() < 1:  # the holder has the only slot
            assert time.monotonic() < deadline
            time.sleep(0.01)
        try:
            shown = grpcurl_error(address, {})
        finally:
            holder.cancel()
    assert shown == (
        "ERROR:\n"
        "  Code: ResourceExhausted\n"
        "  Message: the server is serving its limit of 1 concurrent requests; retry with backoff\n"
        "  Details:\n"
        '  1)\t{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"parakeet.v1",'
        '"metadata":{"limit":"1"},"reason":"CONCURRENCY_LIMIT"}\n'
    )


@pytest.mark.parametrize(
    ("limits", "audio", "message", "reason"),
    [
        (
            AudioLimits(max_duration_s=0.5),
            media.good_wav,
            "audio is longer than the limit of 0 s",
            "DURATION_LIMIT",
        ),
        (AudioLimits(max_bytes=100), media.good_wav, None, "PAYLOAD_TOO_LARGE"),
    ],
    ids=["duration", "size"],
)
def test_grpcurl_shows_the_reason_of_an_over_limit_audio(limits, audio, message, reason) -> None:
    runner = TranscriptionRunner(ScriptedTranscriber())
    servicer = TranscriptionServicer(runner, limits=limits)

    def register(server: grpc.Server) -> None:
        transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(servicer, server)

    host = ServiceHost(
        [HostedService(SERVICE, register)], ServerOptions(host="127.0.0.1", port=0, grace_s=0.2)
    )
    host.start()
    try:
        wait_for_health(host.address, SERVICE, timeout=30)
        data = audio()
        message = message or f"audio is {len(data)} bytes; the limit is 100 bytes"
        shown = grpcurl_error(host.address, {"audio": {"content": base64.b64encode(data).decode()}})
    finally:
        host.drain(0.2)
        runner.close()
    assert shown == (
        "ERROR:\n"
        "  Code: ResourceExhausted\n"
        f"  Message: {message}\n"
        "  Details:\n"
        '  1)\t{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"parakeet.v1",'
        f'"reason":"{reason}"}}\n'
    )
