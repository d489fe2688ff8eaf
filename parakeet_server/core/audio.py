"""Audio in any form a request carries -> 16 kHz mono float32 samples, decoded with PyAV.

The one decoder every service and path uses. Bytes are decoded in memory (no temp files);
URLs are fetched by `parakeet_server.core.fetch`, which refuses internal addresses. Limits on size and
duration are enforced while decoding, so an oversized file stops early instead of filling memory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from parakeet.v1 import audio_pb2
from parakeet_server.core.errors import InvalidRequest, LimitExceeded
from parakeet_server.core.fetch import FetchPolicy, fetch_bytes
from parakeet_server.core.memory import note_audio

SAMPLE_RATE = 16_000

# Names people send as audio_format -> PyAV demuxer names. Unknown hints are passed through.
_DEMUXER_ALIASES = {
    "m4a": "mp4",
    "aac": "aac",
    "mp4": "mp4",
    "mov": "mov",
    "webm": "matroska",
    "mkv": "matroska",
    "opus": "ogg",
    "oga": "ogg",
    "wave": "wav",
    "pcm_s16le": "s16le",
}


# The demuxers FFmpeg may pick. Without this list, content can select demuxers that open other
# inputs themselves (hls fetches segment URLs past the SSRF guard, concat reads local files), so
# only self-contained audio/video containers are allowed; nested opens get no protocol at all.
AUDIO_DEMUXERS = (
    "aac,ac3,aiff,amr,ape,asf,au,avi,caf,dsf,dts,eac3,f32le,flac,flv,matroska,mov,mp3,mpc,mpc8,"
    "mpegts,ogg,s16le,tta,voc,w64,wav,wsaud,wv,xwma"
)
_OPEN_OPTIONS = {"format_whitelist": AUDIO_DEMUXERS, "protocol_whitelist": "none"}


@dataclass(frozen=True)
class AudioLimits:
    """Per-request limits; defaults suit a GPU worker transcribing up to a few hours."""

    max_bytes: int = 512 * 1024 * 1024
    max_duration_s: float = 4 * 3600.0


@dataclass(frozen=True)
class Waveform:
    """Mono float32 samples in [-1, 1] at `sample_rate` Hz."""

    samples: npt.NDArray[np.float32]
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def _demuxer(format_hint: str) -> str | None:
    hint = format_hint.strip().lower().lstrip(".")
    if not hint:
        return None
    return _DEMUXER_ALIASES.get(hint, hint)


# Frames are resampled in blocks of about this many seconds: per-frame calls into the resampler
# cost more than the resampling itself, and whole-file blocks would double peak memory.
_RESAMPLE_BLOCK_S = 10.0

# Full scale of each sample format (by its packed name): integer samples are divided by it, as
# FFmpeg's own conversion to float does; unsigned 8-bit samples are centred on 128 first.
_FULL_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2.0**31, "s64": 2.0**63, "flt": 1.0, "dbl": 1.0}


@dataclass(frozen=True)
class _Block:
    """Decoded samples as PyAV returns them: (channels, n) for planar formats, (1, n * channels) packed."""

    data: npt.NDArray[Any]
    format: av.AudioFormat
    channels: int
    rate: int


def _blocks(frames: Iterator[av.AudioFrame]) -> Iterator[_Block]:
    """Decoded frames joined into ~10 s blocks of the same format, channel count and rate."""
    pending: list[npt.NDArray[Any]] = []
    pending_samples = 0
    shape: tuple[str, int, int] | None = None
    fmt: av.AudioFormat | None = None

    def flush() -> _Block:
        assert shape is not None and fmt is not None
        data = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
        return _Block(data, fmt, shape[1], shape[2])

    for frame in frames:
        key = (frame.format.name, frame.layout.nb_channels, frame.sample_rate)
        if pending and (key != shape or pending_samples >= _RESAMPLE_BLOCK_S * frame.sample_rate):
            yield flush()
            pending, pending_samples = [], 0
        shape, fmt = key, frame.format
        pending.append(frame.to_ndarray())
        pending_samples += frame.samples
    if pending:
        yield flush()


def _mono(block: _Block) -> npt.NDArray[np.float32]:
    """The block as float32 at full scale 1.0, channels averaged.

    Averaging is what NeMo and pyannote do to multichannel audio themselves, and it needs no
    channel layout: FFmpeg's resampler has none for 9, 11, 32, 64 or 96 channels (it refused
    them) and, for the counts it knows, weighs channels by position without normalising (a
    stereo file came out 1.41x louder, 5.1 clipped)."""
    packed = block.format.packed.name
    channels = block.channels
    # Rows are channels: planar data already is; packed data interleaves them.
    rows = block.data if block.format.is_planar else block.data.reshape(-1, channels).T
    mono: npt.NDArray[np.float32]
    if channels <= 8:  # row by row is fastest for few channels; a copy, so it can be scaled in place
        mono = rows[0].astype(np.float32)
        for row in rows[1:]:
            mono += row
    else:
        mono = np.add.reduce(rows, axis=0, dtype=np.float32)
    if packed == "u8":
        mono -= 128.0 * channels
    scale = _FULL_SCALE.get(packed, 1.0) * channels
    if scale != 1.0:
        mono *= np.float32(1.0 / scale)
    return mono


class _Samples:
    """One growing float32 buffer the decoded audio is written into.

    Sized up front from the duration the container declares (exact for WAV and FLAC, estimated
    from the file size for headerless and some MP3 files), grown by half when that is short or
    missing, and never sized past the duration limit. Growing and the final trim are
    `ndarray.resize`, i.e. realloc, which glibc does with mremap for large blocks: neither copies
    the samples, and the unused pages of a generous first reservation are never touched, so they
    never count (growth zero-fills its new part). This replaced a list of ~10 s chunks joined by
    np.concatenate, which peaked at three times the samples for a 3-hour file and left the chunks
    on the heap, where glibc kept them after the request.
    """

    def __init__(self, declared_s: float | None, max_samples: int) -> None:
        self._max_samples = max_samples
        if declared_s is not None and math.isfinite(declared_s) and declared_s > 0:
            expected = int(declared_s * SAMPLE_RATE)
            capacity = expected + expected // 64 + SAMPLE_RATE  # resampler tails, estimated durations
        else:
            capacity = _DEFAULT_CAPACITY_S * SAMPLE_RATE
        self._data = np.empty(min(capacity, max_samples + SAMPLE_RATE), dtype=np.float32)
        self.size = 0

    def append(self, chunk: npt.NDArray[np.float32]) -> None:
        end = self.size + len(chunk)
        if end > len(self._data):
            capacity = max(end, min(len(self._data) * 3 // 2, self._max_samples + SAMPLE_RATE))
            self._data.resize(capacity, refcheck=False)  # no views of _data exist
        view = self._data[self.size : end]
        view[:] = chunk
        # float sources can hold NaN and values past full scale; per chunk, while it is in cache
        np.nan_to_num(view, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        np.clip(view, -1.0, 1.0, out=view)
        self.size = end

    def take(self) -> npt.NDArray[np.float32]:
        """The samples, trimmed to size in place; the buffer is empty afterwards."""
        data, self._data = self._data, np.empty(0, dtype=np.float32)
        data.resize(self.size, refcheck=False)
        return data

    def discard(self) -> None:
        """Free the samples now (an exception's traceback would otherwise keep them alive)."""
        self._data = np.empty(0, dtype=np.float32)


# Initial size when the container declares no duration; grown as needed.
_DEFAULT_CAPACITY_S = 60


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / av.time_base
    return None


def _decode_into(container: av.container.InputContainer, max_samples: int) -> _Samples:
    stream = next(iter(container.streams.audio), None)
    if stream is None:
        raise InvalidRequest("the file has no audio stream", reason="AUDIO_UNDECODABLE")
    samples = _Samples(_declared_seconds(container, stream), max_samples)
    try:
        resampler: av.AudioResampler | None = None
        resampler_rate = 0

        def add(chunk: npt.NDArray[np.float32]) -> None:
            if samples.size + len(chunk) > max_samples:
                raise LimitExceeded(
                    f"audio is longer than the limit of {max_samples / SAMPLE_RATE:.0f} s",
                    reason="DURATION_LIMIT",
                )
            samples.append(chunk)

        def drain(resampler: av.AudioResampler) -> None:
            for out in resampler.resample(None):
                samples.append(_frame_samples(out))  # a few samples of filter delay: no limit check

        for block in _blocks(container.decode(stream)):
            mono = _mono(block)
            if block.rate == SAMPLE_RATE:
                add(mono)
                continue
            if resampler is None or block.rate != resampler_rate:
                if resampler is not None:
                    drain(resampler)  # the rate changed mid-stream: one resampler per rate
                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                resampler_rate = block.rate
            frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = block.rate
            del mono
            for out in resampler.resample(frame):
                add(_frame_samples(out))
        if resampler is not None:
            drain(resampler)
    except BaseException:
        samples.discard()
        raise
    finally:
        note_audio(seconds=samples.size / SAMPLE_RATE)  # also when the duration limit stopped it
    return samples


def _frame_samples(frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def decode_bytes(data: bytes, format_hint: str = "", limits: AudioLimits | None = None) -> Waveform:
    """Decode any container/codec PyAV reads, at any rate and channel count, to 16 kHz mono."""
    limits = limits or AudioLimits()
    if not data:
        raise InvalidRequest("audio is empty (0 bytes)", reason="AUDIO_MISSING")
    if len(data) > limits.max_bytes:
        raise LimitExceeded(
            f"audio is {len(data)} bytes; the limit is {limits.max_bytes} bytes", reason="PAYLOAD_TOO_LARGE"
        )
    note_audio(input_bytes=len(data))
    max_samples = int(limits.max_duration_s * SAMPLE_RATE)
    demuxers = [_demuxer(format_hint), None] if format_hint else [None]
    last_error: Exception | None = None
    for demuxer in dict.fromkeys(demuxers):
        try:
            with av.open(io.BytesIO(data), mode="r", format=demuxer, options=_OPEN_OPTIONS) as container:
                decoded = _decode_into(container, max_samples)
        except (InvalidRequest, LimitExceeded):
            raise
        except (av.FFmpegError, ValueError, EOFError, OSError) as error:
            last_error = error
            continue
        if decoded.size == 0:
            raise InvalidRequest(
                "the audio decodes to no samples (empty or truncated file)", reason="AUDIO_UNDECODABLE"
            )
        return Waveform(decoded.take())
    hint = f" as {format_hint!r}" if format_hint else ""
    raise InvalidRequest(
        f"could not decode the audio{hint} ({type(last_error).__name__}); send a common audio file "
        "(wav, flac, mp3, ogg/opus, m4a, webm) or set audio_format",
        reason="AUDIO_UNDECODABLE",
    )


def load_audio(
    audio: audio_pb2.Audio,
    limits: AudioLimits | None = None,
    fetch_policy: FetchPolicy | None = None,
    time_budget_s: float | None = None,
) -> Waveform:
    """The request's audio, fetched if it is a URL, decoded to a 16 kHz mono waveform.

    `time_budget_s` (the caller's remaining deadline) bounds a download, so a URL that trickles
    bytes cannot hold a worker thread after the caller has gone.
    """
    limits = limits or AudioLimits()
    source = audio.WhichOneof("source")
    if source == "content":
        return decode_bytes(audio.content, audio.format, limits)
    if source == "uri":
        policy = fetch_policy or FetchPolicy(max_bytes=limits.max_bytes)
        if time_budget_s is not None:
            policy = replace(policy, total_timeout_s=min(policy.total_timeout_s, time_budget_s))
        data = fetch_bytes(audio.uri, policy)
        return decode_bytes(data, audio.format, limits)
    raise InvalidRequest(
        "audio is required: set audio.uri (http/https URL) or audio.content (file bytes)",
        reason="AUDIO_MISSING",
    )
