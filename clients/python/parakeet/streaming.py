"""Audio for the live Streaming* calls: where the bytes come from, what format they are in, and
how fast they go out.

A stream's first message names the audio format (`StreamingAudioFormat`); every later one
carries bytes of it. `AudioStream` keeps the two together, with the byte rate of raw PCM so
`realtime` pacing can send audio as fast as it was recorded:

    wav_stream("call.wav")          16-bit PCM WAV, sent as its PCM frames with its rate and
                                    channels (the server resamples and mixes to mono)
    pcm_stream(sys.stdin.buffer)    raw PCM, s16le 16 kHz mono unless told otherwise
    container_stream("call.mp3")    any other file, sent as its encoded bytes for the server
                                    to decode as they arrive (container hint from the suffix)
    open_audio(audio)               picks one of these for a path, file bytes or an iterable

Realtime pacing needs the byte rate, which only raw PCM (and PCM WAV) has up front: a
compressed file's duration is known only once it is decoded, so pacing one is refused
(`require_pacing`) rather than guessed; `ffmpeg -re -i call.mp3 -f s16le -ac 1 -ar 16000 -`
turns any file into paced PCM instead.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
import wave
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from parakeet.v1 import streaming_pb2

# Raw PCM goes out in chunks of this much audio: small enough for live latency, large enough
# that the per-message overhead stays negligible.
PCM_CHUNK_SECONDS = 0.1
# Encoded (container) bytes have no duration of their own; this many per message.
CONTAINER_CHUNK_BYTES = 16 * 1024
DEFAULT_SAMPLE_RATE_HZ = 16_000
# Raw PCM encodings by their command-line names, and the bytes of one sample of each.
ENCODINGS: dict[str, streaming_pb2.AudioEncoding] = {
    "s16le": streaming_pb2.AUDIO_ENCODING_PCM_S16LE,
    "f32le": streaming_pb2.AUDIO_ENCODING_PCM_F32LE,
}
_SAMPLE_BYTES = {streaming_pb2.AUDIO_ENCODING_PCM_S16LE: 2, streaming_pb2.AUDIO_ENCODING_PCM_F32LE: 4}
REALTIME_HINT = "ffmpeg -re -i FILE -f s16le -ac 1 -ar 16000 - | parakeet stream -"

Chunks = Iterable[bytes] | AsyncIterable[bytes]


@dataclass(frozen=True)
class AudioStream:
    """Audio to stream: the format the config announces, the bytes in order, and for raw PCM
    its `bytes_per_second` (0 for an encoded container, whose rate is unknown until decoded)."""

    format: streaming_pb2.StreamingAudioFormat
    chunks: Chunks
    bytes_per_second: float = 0.0


# What `ParakeetClient.stream` takes as audio: a file path, an encoded file's bytes, an
# `AudioStream`, or chunks of raw s16le 16 kHz mono PCM.
StreamAudio = str | os.PathLike[str] | bytes | bytearray | memoryview | AudioStream | Chunks


def pcm_stream(
    source: BinaryIO | Chunks,
    *,
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
    channels: int = 1,
    encoding: str = "s16le",
) -> AudioStream:
    """Raw interleaved PCM from a binary file (stdin: read in ~100 ms chunks) or from chunks,
    sent as given. The server resamples any rate to 16 kHz and mixes channels to mono."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if sample_rate_hz < 1 or channels < 1:
        raise ValueError(
            f"sample rate and channels must be at least 1, got {sample_rate_hz} Hz and {channels}"
        )
    frame_bytes = _SAMPLE_BYTES[ENCODINGS[encoding]] * channels
    chunks: Chunks = source
    if hasattr(source, "read"):
        chunks = _read_chunks(source, _pcm_chunk_frames(sample_rate_hz) * frame_bytes)  # type: ignore[arg-type]
    audio_format = streaming_pb2.StreamingAudioFormat(
        encoding=ENCODINGS[encoding], sample_rate_hz=sample_rate_hz, channels=channels
    )
    return AudioStream(audio_format, chunks, float(sample_rate_hz * frame_bytes))


def wav_stream(source: str | os.PathLike[str] | bytes) -> AudioStream:
    """A WAV file (path or bytes): 16-bit PCM goes out as its frames in ~100 ms chunks with its
    own rate and channels; any other WAV (float, 24-bit, extensible) as container bytes."""
    try:
        with _open_wav(source) as reader:
            rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
    except (wave.Error, EOFError):
        return container_stream(source, "wav")
    if width != 2:
        return container_stream(source, "wav")
    audio_format = streaming_pb2.StreamingAudioFormat(
        encoding=streaming_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=rate, channels=channels
    )
    return AudioStream(audio_format, _wav_frames(source, _pcm_chunk_frames(rate)), float(rate * channels * 2))


def container_stream(source: str | os.PathLike[str] | bytes | Chunks, container: str = "") -> AudioStream:
    """Encoded audio (ogg/opus, webm, mp3, flac, ...) for the server to decode as it arrives;
    `container` names it (default: a path's suffix; empty lets the server detect it)."""
    chunks: Chunks
    if isinstance(source, bytes):
        chunks = _read_chunks(io.BytesIO(source), CONTAINER_CHUNK_BYTES)
    elif isinstance(source, str | os.PathLike):
        container = container or Path(source).suffix.lstrip(".").lower()
        chunks = _file_chunks(Path(source), CONTAINER_CHUNK_BYTES)
    else:
        chunks = source
    audio_format = streaming_pb2.StreamingAudioFormat(
        encoding=streaming_pb2.AUDIO_ENCODING_CONTAINER, container=container
    )
    return AudioStream(audio_format, chunks)


def open_audio(audio: StreamAudio) -> AudioStream:
    """The `AudioStream` for what `ParakeetClient.stream` was given: a path or an encoded
    file's bytes (WAV by its header, anything else as a container), or raw s16le 16 kHz mono
    chunks. A missing file raises FileNotFoundError here, before any call starts."""
    if isinstance(audio, AudioStream):
        return audio
    if isinstance(audio, bytes | bytearray | memoryview):
        data = bytes(audio)
        return wav_stream(data) if _is_wav(data[:12]) else container_stream(data)
    if isinstance(audio, str | os.PathLike):
        path = Path(audio)
        with path.open("rb") as file:
            head = file.read(12)
        return wav_stream(path) if _is_wav(head) else container_stream(path)
    return pcm_stream(audio)


def require_pacing(audio: AudioStream) -> float:
    """The byte rate realtime pacing sends `audio` at; ValueError for encoded audio."""
    if audio.bytes_per_second <= 0:
        raise ValueError(
            "realtime pacing needs the audio's duration up front, which only raw PCM and 16-bit "
            f"WAV have; send this file as fast as possible, or let ffmpeg pace it: {REALTIME_HINT}"
        )
    return audio.bytes_per_second


# -- pacing ------------------------------------------------------------------------------------


def paced(
    chunks: Iterable[bytes],
    bytes_per_second: float,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[bytes]:
    """`chunks` each released when the wall clock reaches the end of its audio, as a live
    microphone would deliver it. The target is the running byte count, not a sleep per chunk,
    so slow reads or sends never add up to drift. Ends early once `stop` is set."""
    started: float | None = None
    sent = 0
    for chunk in chunks:
        started = clock() if started is None else started
        sent += len(chunk)
        delay = started + sent / bytes_per_second - clock()
        if (delay > 0 and stop.wait(delay)) or stop.is_set():
            return
        yield chunk


async def apaced(chunks: AsyncIterable[bytes], bytes_per_second: float) -> AsyncIterator[bytes]:
    """The asyncio twin of `paced` (cancelled with its task)."""
    loop = asyncio.get_running_loop()
    started: float | None = None
    sent = 0
    async for chunk in chunks:
        started = loop.time() if started is None else started
        sent += len(chunk)
        delay = started + sent / bytes_per_second - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield chunk


async def aiterate(chunks: Chunks) -> AsyncIterator[bytes]:
    """Async chunks as they are; sync ones read in a worker thread, so a blocking read (a pipe,
    a device) never stalls the event loop."""
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
        return
    iterator = iter(chunks)
    while True:
        item: bytes | None = await asyncio.to_thread(_next, iterator)
        if item is None:
            return
        yield item


def _next(iterator: Iterator[bytes]) -> bytes | None:
    return next(iterator, None)


# -- readers -----------------------------------------------------------------------------------


def _pcm_chunk_frames(sample_rate_hz: int) -> int:
    return max(1, round(sample_rate_hz * PCM_CHUNK_SECONDS))


def _is_wav(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def _open_wav(source: str | os.PathLike[str] | bytes) -> wave.Wave_read:
    return wave.open(io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source), "rb")


def _wav_frames(source: str | os.PathLike[str] | bytes, frames: int) -> Iterator[bytes]:
    """The PCM frames, opened only when the stream starts and closed when it ends."""
    with _open_wav(source) as reader:
        while chunk := reader.readframes(frames):
            yield chunk


def _read_chunks(file: BinaryIO, size: int) -> Iterator[bytes]:
    """`size`-byte reads until end of file (a pipe's read blocks until it has them)."""
    while chunk := file.read(size):
        yield chunk


def _file_chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as file:
        yield from _read_chunks(file, size)
