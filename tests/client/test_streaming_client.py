"""The client side of live streams: `ParakeetClient.stream` and its asyncio twin against a scripted
gRPC server (tests/client/scripted_stream.py) that records what arrives: the config first, the
audio bytes exactly as sent and when, cancellation; and maps the statuses it is told to end with."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import time
import wave
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

import parakeet
from parakeet import (
    AsyncParakeetClient,
    InvalidArgument,
    ParakeetClient,
    ParakeetError,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    pcm_stream,
    streaming_config,
)
from parakeet.streaming import CONTAINER_CHUNK_BYTES, container_stream, open_audio
from parakeet.v1 import diarization_pb2, orchestrator_pb2, streaming_pb2, transcription_pb2
from tests.client import scripted_stream
from tests.client.scripted_stream import (
    DIARIZE_TURN,
    REQUEST_ID,
    TRANSCRIBE_FINAL,
    Failure,
    Received,
    Script,
    ScriptedStreams,
    final,
    interim,
    summary,
)

scripted = scripted_stream.scripted  # the fixture

S16LE = streaming_pb2.AUDIO_ENCODING_PCM_S16LE
CONTAINER = streaming_pb2.AUDIO_ENCODING_CONTAINER
REALTIME_REFUSAL = (
    "realtime pacing needs the audio's duration up front, which only raw PCM and 16-bit WAV have; "
    "send this file as fast as possible, or let ffmpeg pace it: "
    "ffmpeg -re -i FILE -f s16le -ac 1 -ar 16000 - | parakeet stream -"
)


def pcm(seconds: float, rate: int = 16_000, channels: int = 1, width: int = 2, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(int(seconds * rate) * channels * width)


def wav(frames: bytes, rate: int = 16_000, channels: int = 1, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


SCRIPT = [
    (1, interim("hello", start=0.0, processed=0.1)),
    (None, final("hello there", 0.04, 1.25, "SPEAKER_00")),
    (None, summary(2.0, ("SPEAKER_00",))),
]


def wait_for(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def assert_pcm_chunks(received: Received, frames: bytes, chunk_bytes: int) -> None:
    """The audio arrived byte for byte, in ~100 ms chunks (the last one shorter)."""
    assert b"".join(received.audio) == frames
    sizes = [len(chunk) for chunk in received.audio]
    assert sizes[:-1] == [chunk_bytes] * (len(sizes) - 1) and 0 < sizes[-1] <= chunk_bytes


# -- the config and the bytes -------------------------------------------------------------------


def test_stream_sends_the_config_then_the_wav_frames_exactly_and_yields_every_response(
    scripted: tuple[str, ScriptedStreams], tmp_path: Path
) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=SCRIPT)
    frames = pcm(2.05, rate=22_050, channels=2)
    path = tmp_path / "call.wav"
    path.write_bytes(wav(frames, rate=22_050, channels=2))
    with ParakeetClient(address, token="s3cret") as client:
        responses = list(
            client.stream(path, diarize=True, num_speakers=2, word_timestamps=False, endpoint_silence_ms=300)
        )
    assert responses == [response for _after, response in SCRIPT]
    (call,) = servicer.calls
    assert call.method == "orchestrate" and call.metadata["authorization"] == "Bearer s3cret"
    assert call.config == streaming_pb2.StreamingConfig(
        audio_format=streaming_pb2.StreamingAudioFormat(encoding=S16LE, sample_rate_hz=22_050, channels=2),
        diarize=True,
        num_speakers=2,
        word_timestamps=False,
        endpoint_silence_ms=300,
    )
    # Defaults stay unset on the wire: the server's defaults (true) apply.
    assert not call.config.HasField("interim_results") and not call.config.HasField("max_speakers")
    assert_pcm_chunks(call, frames, 2205 * 2 * 2)


def test_streaming_config_is_the_one_builder_and_leaves_defaults_unset() -> None:
    assert streaming_config() == streaming_pb2.StreamingConfig()
    config = streaming_config(interim_results=False, max_speakers=3, language="en", speakers_optional=True)
    assert config.HasField("interim_results") and config.interim_results is False
    assert (config.max_speakers, config.language, config.speakers_optional) == (3, "en", True)
    assert not config.HasField("word_timestamps") and not config.HasField("audio_format")


def test_sources_other_than_16_bit_wav(scripted: tuple[str, ScriptedStreams], tmp_path: Path) -> None:
    address, servicer = scripted
    mp3 = tmp_path / "call.MP3"
    encoded = random.Random(1).randbytes(CONTAINER_CHUNK_BYTES * 2 + 5)
    mp3.write_bytes(encoded)
    eight_bit = wav(pcm(0.3, width=1), width=1)
    raw = pcm(0.25)
    with ParakeetClient(address) as client:
        list(client.stream(mp3))
        list(client.stream(eight_bit))  # a WAV the wave module reads but that is not s16le
        list(client.stream([raw[:1000], b"", raw[1000:]]))  # chunks of raw PCM, sent as given
        list(client.stream(pcm_stream(iter([raw]), sample_rate_hz=8000, channels=2, encoding="f32le")))
    container, wav8, chunks, f32 = servicer.calls
    assert container.config.audio_format == streaming_pb2.StreamingAudioFormat(
        encoding=CONTAINER, container="mp3"
    )
    assert [len(chunk) for chunk in container.audio] == [CONTAINER_CHUNK_BYTES] * 2 + [5]
    assert b"".join(container.audio) == encoded
    assert wav8.config.audio_format == streaming_pb2.StreamingAudioFormat(encoding=CONTAINER, container="wav")
    assert b"".join(wav8.audio) == eight_bit
    assert chunks.config == streaming_pb2.StreamingConfig(
        audio_format=streaming_pb2.StreamingAudioFormat(encoding=S16LE, sample_rate_hz=16_000, channels=1)
    )
    assert chunks.audio == [raw[:1000], raw[1000:]]  # the empty chunk is not a message
    assert f32.config.audio_format == streaming_pb2.StreamingAudioFormat(
        encoding=streaming_pb2.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=8000, channels=2
    )


def test_each_rpc_gets_its_own_request_and_response_types(scripted: tuple[str, ScriptedStreams]) -> None:
    address, servicer = scripted
    with ParakeetClient(address) as client:
        servicer.script = Script(replies=[(None, TRANSCRIBE_FINAL)])
        transcribed = list(client.stream(pcm(0.2), rpc="transcribe"))
        servicer.script = Script(replies=[(None, DIARIZE_TURN)])
        diarized = list(client.stream(pcm(0.2), rpc="diarize"))
        with pytest.raises(
            ValueError, match=r"^rpc must be one of orchestrate, transcribe, diarize, got 'x'$"
        ):
            client.stream(pcm(0.2), rpc="x")  # type: ignore[call-overload]
    assert transcribed == [TRANSCRIBE_FINAL] and isinstance(
        transcribed[0], transcription_pb2.StreamingTranscribeResponse
    )
    assert diarized == [DIARIZE_TURN] and isinstance(diarized[0], diarization_pb2.StreamingDiarizeResponse)
    assert [call.method for call in servicer.calls] == ["transcribe", "diarize"]
    assert all(
        isinstance(call.requests[0][1], transcription_pb2.StreamingTranscribeRequest)
        for call in servicer.calls[:1]
    )
    assert isinstance(servicer.calls[1].requests[0][1], diarization_pb2.StreamingDiarizeRequest)


def test_a_stream_not_iterated_never_starts_a_call(scripted: tuple[str, ScriptedStreams]) -> None:
    address, servicer = scripted
    with ParakeetClient(address) as client:
        responses = client.stream(pcm(0.2))
        responses.close()
        with pytest.raises(FileNotFoundError):  # checked when asked, not when iterated
            client.stream("/nonexistent/call.wav")
    time.sleep(0.1)
    assert servicer.calls == []


# -- pacing -------------------------------------------------------------------------------------


def test_realtime_sends_at_the_audios_own_rate_and_responses_arrive_meanwhile(
    scripted: tuple[str, ScriptedStreams],
) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=SCRIPT)
    frames = pcm(2.0)
    with ParakeetClient(address) as client:
        started = time.monotonic()
        arrivals = [
            (time.monotonic() - started, response) for response in client.stream(wav(frames), realtime=True)
        ]
        elapsed = time.monotonic() - started
    (call,) = servicer.calls
    assert_pcm_chunks(call, frames, 3200)
    assert 1.9 <= elapsed < 3.0, elapsed
    # Each chunk goes out when the clock reaches the end of its audio (never before), and the
    # last is not late: the pace does not drift over 20 chunks.
    offsets = [at - call.requests[0][0] for at in call.audio_times]
    assert all(offset > 0.1 * (index + 1) - 0.03 for index, offset in enumerate(offsets)), offsets
    assert offsets[-1] < 2.25, offsets
    # The interim came back while the audio was still being sent.
    assert arrivals[0][1].HasField("interim") and arrivals[0][0] < 0.6, arrivals[0][0]


def test_fast_mode_sends_as_fast_as_the_call_takes_it(scripted: tuple[str, ScriptedStreams]) -> None:
    address, servicer = scripted
    with ParakeetClient(address) as client:
        started = time.monotonic()
        list(client.stream(wav(pcm(2.0))))
        assert time.monotonic() - started < 0.5
    assert len(servicer.calls[0].audio) == 20


def test_realtime_is_refused_for_encoded_audio_before_any_call(
    scripted: tuple[str, ScriptedStreams], tmp_path: Path
) -> None:
    address, servicer = scripted
    ogg = tmp_path / "call.ogg"
    ogg.write_bytes(b"OggS" + bytes(100))
    with ParakeetClient(address) as client:
        for audio in (ogg, container_stream(b"OggS")):
            with pytest.raises(ValueError) as refused:
                client.stream(audio, realtime=True)
            assert str(refused.value) == REALTIME_REFUSAL
    assert servicer.calls == []
    assert open_audio(ogg).bytes_per_second == 0.0 and open_audio(wav(b"")).bytes_per_second == 32_000


# -- errors and cancellation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "error_type", "reason", "retryable"),
    [
        (
            Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "the stream passed 3600 s", "DURATION_LIMIT"),
            ResourceExhausted,
            "DURATION_LIMIT",
            False,
        ),
        (
            Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many live streams", "CONCURRENCY_LIMIT"),
            ResourceExhausted,
            "CONCURRENCY_LIMIT",
            True,
        ),
        (
            Failure(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a config", "STREAM_PROTOCOL"
            ),
            InvalidArgument,
            "STREAM_PROTOCOL",
            False,
        ),
        (Failure(grpc.StatusCode.UNIMPLEMENTED, "no streaming here"), Unimplemented, "UNIMPLEMENTED", False),
    ],
)
def test_a_failed_stream_raises_the_clients_error_after_the_finals_it_sent(
    scripted: tuple[str, ScriptedStreams],
    failure: Failure,
    error_type: type[ParakeetError],
    reason: str,
    retryable: bool,
) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=[(None, final("kept", 0.0, 1.0))], failure=failure)
    received = []
    with ParakeetClient(address) as client, pytest.raises(error_type) as raised:
        for response in client.stream(pcm(0.3)):
            received.append(response)
    assert received == [final("kept", 0.0, 1.0)]
    error = raised.value
    assert (error.code, error.details, error.reason, error.retryable) == (
        failure.code,
        failure.message,
        reason,
        retryable,
    )
    assert error.request_id == REQUEST_ID


def test_no_server_is_unavailable() -> None:
    with (
        socket_port() as port,
        ParakeetClient(f"127.0.0.1:{port}", timeout=5) as client,
        pytest.raises(Unavailable) as raised,
    ):
        list(client.stream(pcm(0.1)))
    assert raised.value.reason == "UNAVAILABLE" and raised.value.retryable


@contextlib.contextmanager
def socket_port():
    """A loopback port nothing listens on (bound and closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


class CountingChunks:
    """Raw PCM chunks that count how many were taken, and can fail after `fail_after`."""

    def __init__(
        self,
        chunks: list[bytes],
        fail_after: int | None = None,
        before_failing: Callable[[], None] | None = None,
    ) -> None:
        self.chunks, self.fail_after, self.taken = chunks, fail_after, 0
        self.before_failing = before_failing

    def __iter__(self):
        for chunk in self.chunks:
            if self.fail_after is not None and self.taken == self.fail_after:
                if self.before_failing is not None:
                    self.before_failing()
                raise OSError(5, "Input/output error")
            self.taken += 1
            yield chunk


def test_leaving_the_loop_cancels_the_call_and_stops_the_sender(
    scripted: tuple[str, ScriptedStreams],
) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=[(1, interim("hel"))], until_cancelled=True)
    source = CountingChunks([pcm(0.1, seed=i) for i in range(40)])
    with ParakeetClient(address) as client:
        started = time.monotonic()
        for response in client.stream(source, realtime=True):
            assert response.interim.text == "hel"
            break
        assert time.monotonic() - started < 1.5
    (call,) = servicer.calls
    assert call.cancelled.wait(2.0) and not call.finished
    taken = source.taken
    time.sleep(0.4)
    assert source.taken == taken < 20  # the sender stopped reading the 40 chunks


def test_a_failing_source_raises_its_own_error_and_cancels_the_call(
    scripted: tuple[str, ScriptedStreams],
) -> None:
    address, servicer = scripted
    servicer.script = Script(until_cancelled=True)

    def server_has_the_audio() -> None:
        """Fail only once the server holds the two chunks: earlier, the cancel can beat the handler
        to the call (then there is nothing to assert about how the server saw it end)."""
        deadline = time.monotonic() + 5.0
        while not (servicer.calls and len(servicer.calls[0].requests) >= 3) and time.monotonic() < deadline:
            time.sleep(0.01)

    with ParakeetClient(address) as client, pytest.raises(OSError, match="Input/output error"):
        list(
            client.stream(CountingChunks([pcm(0.1)] * 10, fail_after=2, before_failing=server_has_the_audio))
        )
    (call,) = servicer.calls
    assert call.cancelled.wait(2.0) and len(call.audio) <= 2  # cancelled, not half-closed


def test_the_blocking_client_refuses_async_chunks() -> None:
    async def chunks():
        yield b"x"

    with ParakeetClient("127.0.0.1:1") as client, pytest.raises(TypeError, match="use AsyncParakeetClient"):
        client.stream(chunks())  # refused when asked, not when iterated


# -- the asyncio twin ---------------------------------------------------------------------------


def test_the_async_client_streams_the_same(scripted: tuple[str, ScriptedStreams]) -> None:
    address, servicer = scripted
    servicer.script = Script(replies=SCRIPT)
    frames = pcm(0.75, rate=8000)

    async def chunks():
        for start in range(0, len(frames), 1000):
            yield frames[start : start + 1000]

    async def run():
        async with AsyncParakeetClient(address, token="s3cret") as client:
            from_wav = [response async for response in client.stream(wav(frames, rate=8000), diarize=True)]
            from_async = [
                response async for response in client.stream(pcm_stream(chunks(), sample_rate_hz=8000))
            ]
            started = time.monotonic()
            paced = [response async for response in client.stream(wav(pcm(1.0)), realtime=True)]
            return from_wav, from_async, paced, time.monotonic() - started

    from_wav, from_async, paced, elapsed = asyncio.run(run())
    with ParakeetClient(address, token="s3cret") as client:
        blocking = list(client.stream(wav(frames, rate=8000), diarize=True))
    assert from_wav == from_async == paced == blocking == [response for _after, response in SCRIPT]
    async_wav, async_chunks, async_paced, sync_wav = servicer.calls
    assert [r for _at, r in async_wav.requests] == [r for _at, r in sync_wav.requests]
    assert async_wav.metadata["authorization"] == "Bearer s3cret"
    assert async_chunks.audio == [frames[start : start + 1000] for start in range(0, len(frames), 1000)]
    assert 0.95 <= elapsed < 2.0 and len(async_paced.audio) == 10


def test_the_async_client_maps_errors_and_cancels_like_the_blocking_one(
    scripted: tuple[str, ScriptedStreams],
) -> None:
    address, servicer = scripted

    async def run() -> tuple[ParakeetError, OSError]:
        async with AsyncParakeetClient(address) as client:
            servicer.script = Script(
                failure=Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "too long", "DURATION_LIMIT")
            )
            with pytest.raises(ResourceExhausted) as limit:
                [response async for response in client.stream(pcm(0.2))]
            servicer.script = Script(replies=[(1, interim("hel"))], until_cancelled=True)
            async with contextlib.aclosing(client.stream([pcm(0.1)] * 20, realtime=True)) as responses:
                async for _response in responses:
                    break
            servicer.script = Script(until_cancelled=True)
            with pytest.raises(OSError) as failed:
                [r async for r in client.stream(CountingChunks([pcm(0.1)] * 10, fail_after=2))]
            return limit.value, failed.value

    limit, failed = asyncio.run(run())
    assert (limit.reason, limit.details, limit.request_id) == ("DURATION_LIMIT", "too long", REQUEST_ID)
    assert str(failed) == "[Errno 5] Input/output error"
    _limited, broken, failing = servicer.calls
    assert broken.cancelled.wait(2.0) and not broken.finished
    assert failing.cancelled.wait(2.0) and len(failing.audio) <= 2


def test_the_async_client_keeps_a_refusal_that_ends_the_stream_while_audio_is_being_sent(
    scripted: tuple[str, ScriptedStreams],
) -> None:
    """grpcio's aio client reports its own INTERNAL "Internal error from Core" for about half of
    such refusals (grpc/grpc#36066); the client must raise the server's code and reason."""
    address, servicer = scripted
    servicer.script = Script(
        failure=Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many live streams", "CONCURRENCY_LIMIT"),
        fail_after_messages=1,
    )
    chunk = bytes(64 * 1024)

    async def run() -> list[tuple[str, str | None]]:
        seen = []
        async with AsyncParakeetClient(address) as client:
            for _attempt in range(20):
                with pytest.raises(ParakeetError) as raised:
                    [r async for r in client.stream(pcm_stream([chunk] * 200))]
                seen.append((raised.value.code.name, raised.value.reason))
        return seen

    assert asyncio.run(run()) == [("RESOURCE_EXHAUSTED", "CONCURRENCY_LIMIT")] * 20


def test_streaming_names_are_exported() -> None:
    assert {"AudioStream", "pcm_stream", "wav_stream", "container_stream", "streaming_config"} <= set(
        parakeet.__all__
    )
    assert isinstance(parakeet.AudioStream, type)
    assert orchestrator_pb2.StreamingOrchestrateResponse  # the typed responses stream() yields


def test_the_client_package_imports_only_the_standard_library_grpc_and_protobuf() -> None:
    """numpy, PyAV and the like belong to the server: the client decodes nothing itself."""
    import sys

    from tests.client.test_packaging import CLIENT_ROOT, imported_modules

    allowed = set(sys.stdlib_module_names) | {"grpc", "grpc_status", "grpc_health", "google", "parakeet"}
    found = {
        path.name: sorted({name.split(".")[0] for name in imported_modules(path)} - allowed)
        for path in (CLIENT_ROOT / "parakeet").glob("*.py")
    }
    assert "streaming.py" in found and {name: bad for name, bad in found.items() if bad} == {}
