"""The live-stream request loop (core/live.py) and its gate in the interceptor, through real gRPC.

The session here is a counter, not a model: these tests are about the protocol every Streaming*
RPC shares (config first and once, audio after), the idle timeout, the duration limit, the
live-stream limit, cancellation, back-pressure and draining. The services' own sessions are
tested with their models in tests/transcription and tests/diarization.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from parakeet.errors import reason_from_status_details
from parakeet.v1 import streaming_pb2, transcription_pb2, transcription_pb2_grpc
from parakeet_server.core.grpc_server import HostedService, ServiceHost
from parakeet_server.core.live import LiveLimits, LiveOutput, serve_live

SERVICE = "parakeet.v1.TranscriptionService"
RATE = 16_000
Response = transcription_pb2.StreamingTranscribeResponse


class CountingSession:
    """Counts the samples it is fed; a progress response per 0.5 s; a summary on finish."""

    def __init__(self, output: LiveOutput[Response], feed_delay_s: float = 0.0) -> None:
        self.output = output
        self.samples = 0
        self.reported = 0
        self.feed_delay_s = feed_delay_s
        self.cancelled = threading.Event()
        self.finished = threading.Event()

    def feed(self, samples: npt.NDArray[np.float32]) -> None:
        if self.feed_delay_s:
            self.cancelled.wait(self.feed_delay_s)  # a slow model: the reader waits here
        self.samples += len(samples)
        while self.samples - self.reported >= RATE // 2:
            self.reported += RATE // 2
            self.output.send(Response(processed_seconds=self.reported / RATE))

    def finish(self) -> None:
        self.finished.set()
        summary = streaming_pb2.StreamingSummary(duration=self.samples / RATE)
        self.output.send(Response(summary=summary, processed_seconds=self.samples / RATE))
        self.output.end()

    def cancel(self) -> None:
        self.cancelled.set()


class CountingServicer(transcription_pb2_grpc.TranscriptionServiceServicer):
    def __init__(self, limits: LiveLimits, feed_delay_s: float = 0.0) -> None:
        self.limits = limits
        self.feed_delay_s = feed_delay_s
        self.sessions: list[CountingSession] = []

    def open(self, config: streaming_pb2.StreamingConfig, output: LiveOutput[Response]) -> CountingSession:
        session = CountingSession(output, self.feed_delay_s)
        self.sessions.append(session)
        return session

    def StreamingTranscribe(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Response]:
        return serve_live(request_iterator, context, self.open, self.limits)


def host_for(
    start_host: Callable[..., ServiceHost], servicer: CountingServicer, **options: object
) -> transcription_pb2_grpc.TranscriptionServiceStub:
    service = HostedService(
        SERVICE,
        lambda server: transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(servicer, server),
    )
    host = start_host([service], **options)
    assert host.wait_until_warm(10)
    channel = grpc.insecure_channel(host.address)
    return transcription_pb2_grpc.TranscriptionServiceStub(channel)


def config(**fields: Any) -> transcription_pb2.StreamingTranscribeRequest:
    return transcription_pb2.StreamingTranscribeRequest(config=streaming_pb2.StreamingConfig(**fields))


def audio(seconds: float) -> transcription_pb2.StreamingTranscribeRequest:
    return transcription_pb2.StreamingTranscribeRequest(audio=b"\x01\x00" * int(seconds * RATE))


def reason_of(error: grpc.RpcError) -> str | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return reason_from_status_details(value)
    return None


def collect(stub: Any, requests: Iterator[Any] | list[Any], timeout: float = 20) -> list[Response]:
    return list(stub.StreamingTranscribe(iter(requests), timeout=timeout))


def test_audio_after_a_config_comes_back_as_progress_and_a_summary(start_host: Any) -> None:
    servicer = CountingServicer(LiveLimits())
    stub = host_for(start_host, servicer)
    responses = collect(stub, [config(), audio(0.7), audio(0.8)])
    assert [r.processed_seconds for r in responses[:-1]] == [0.5, 1.0, 1.5]
    assert responses[-1].WhichOneof("event") == "summary"
    assert responses[-1].summary.duration == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("requests", "says"),
    [
        ([], "ended before its config"),
        ([audio(0.1)], "must be its config"),
        ([config(), audio(0.1), config()], "second config"),
    ],
    ids=["no-config", "audio-first", "config-twice"],
)
def test_the_stream_protocol_is_enforced(start_host: Any, requests: list[Any], says: str) -> None:
    servicer = CountingServicer(LiveLimits())
    stub = host_for(start_host, servicer)
    with pytest.raises(grpc.RpcError) as raised:
        collect(stub, requests)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(raised.value) == "STREAM_PROTOCOL"
    assert says in raised.value.details()
    if servicer.sessions:  # the config-twice stream had a session: it is dropped, not finished
        assert servicer.sessions[0].cancelled.wait(2)
        assert not servicer.sessions[0].finished.is_set()


def test_audio_in_the_wrong_encoding_is_refused(start_host: Any) -> None:
    stub = host_for(start_host, CountingServicer(LiveLimits()))
    wav_header = transcription_pb2.StreamingTranscribeRequest(
        audio=b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64)
    )
    with pytest.raises(grpc.RpcError) as raised:
        collect(stub, [config(), wav_header])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(raised.value) == "AUDIO_ENCODING"


def test_a_stream_without_audio_for_the_idle_timeout_gets_its_summary_and_ends(start_host: Any) -> None:
    servicer = CountingServicer(LiveLimits(idle_timeout_s=0.5))
    stub = host_for(start_host, servicer)
    hold = threading.Event()

    def requests() -> Iterator[Any]:
        yield config()
        yield audio(1.0)
        hold.wait(10)  # the client stays connected but sends nothing

    started = time.monotonic()
    responses = collect(stub, requests())
    hold.set()
    assert time.monotonic() - started < 5
    assert responses[-1].summary.duration == pytest.approx(1.0)
    assert servicer.sessions[0].finished.is_set()


def test_a_stream_past_the_maximum_duration_gets_its_results_then_duration_limit(start_host: Any) -> None:
    servicer = CountingServicer(LiveLimits(max_stream_seconds=2.0))
    stub = host_for(start_host, servicer)
    received: list[Response] = []
    with pytest.raises(grpc.RpcError) as raised:
        for response in stub.StreamingTranscribe(iter([config()] + [audio(0.5)] * 10), timeout=20):
            received.append(response)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(raised.value) == "DURATION_LIMIT"
    assert "2 s of audio" in raised.value.details()
    assert received[-1].summary.duration == pytest.approx(2.0)  # the finals up to the limit came first


def test_more_live_streams_than_the_limit_are_refused(start_host: Any) -> None:
    stub = host_for(start_host, CountingServicer(LiveLimits()), max_live_streams=2)
    hold = threading.Event()

    def held() -> Iterator[Any]:
        yield config()
        hold.wait(10)

    calls = [stub.StreamingTranscribe(held()) for _ in range(2)]
    time.sleep(0.5)
    try:
        with pytest.raises(grpc.RpcError) as raised:
            collect(stub, [config(), audio(0.1)])
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(raised.value) == "CONCURRENCY_LIMIT"
        assert "2 live streams" in raised.value.details()
    finally:
        hold.set()
        for call in calls:
            call.cancel()
    # Unary calls do not count against the stream limit (and streams not against theirs).
    time.sleep(0.3)
    assert collect(stub, [config(), audio(0.5)])[-1].summary.duration == pytest.approx(0.5)


def test_cancelled_streams_free_their_sessions_and_threads(start_host: Any) -> None:
    servicer = CountingServicer(LiveLimits())
    stub = host_for(start_host, servicer, max_live_streams=64)

    def cancel_one() -> None:
        call = stub.StreamingTranscribe(iter([config(), audio(0.6)]))
        next(call)  # the stream is live
        call.cancel()

    for _ in range(20):  # warm the thread pool up before counting threads
        cancel_one()
    time.sleep(0.5)
    threads = threading.active_count()
    for _ in range(300):
        cancel_one()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and threading.active_count() > threads + 2:
        time.sleep(0.1)
    assert threading.active_count() <= threads + 2
    assert all(s.cancelled.wait(5) or s.finished.is_set() for s in servicer.sessions)
    gc.collect()


def test_audio_faster_than_the_session_consumes_is_paced_not_buffered(start_host: Any) -> None:
    """A slow session makes the reader wait, so unread messages stay with the client (HTTP/2
    flow control), and nothing is lost or reordered."""
    servicer = CountingServicer(LiveLimits(), feed_delay_s=0.05)
    stub = host_for(start_host, servicer)
    sent = 0

    def requests() -> Iterator[Any]:
        nonlocal sent
        yield config()
        for _ in range(40):
            sent += 1
            yield audio(0.25)

    responses = collect(stub, requests(), timeout=60)
    assert sent == 40
    assert responses[-1].summary.duration == pytest.approx(10.0)
    assert [r.processed_seconds for r in responses[:-1]] == [0.5 * (i + 1) for i in range(20)]


def test_draining_gives_live_streams_their_summary_before_the_server_stops(start_host: Any) -> None:
    servicer = CountingServicer(LiveLimits())
    service = HostedService(
        SERVICE,
        lambda server: transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(servicer, server),
    )
    host = start_host([service])
    assert host.wait_until_warm(10)
    stub = transcription_pb2_grpc.TranscriptionServiceStub(grpc.insecure_channel(host.address))
    hold = threading.Event()

    def requests() -> Iterator[Any]:
        yield config()
        yield audio(1.0)
        hold.wait(10)

    call = stub.StreamingTranscribe(requests(), timeout=20)
    assert next(call).processed_seconds == 0.5
    drainer = threading.Thread(target=host.drain, args=(5.0,))
    drainer.start()
    rest = list(call)
    hold.set()
    drainer.join(10)
    assert rest[-1].summary.duration == pytest.approx(1.0)
    assert call.code() == grpc.StatusCode.OK
