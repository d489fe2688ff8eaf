"""Audio in any form a request carries -> 16 kHz mono float32 samples, decoded with PyAV.

With `multichannel` the channels are kept apart instead (`load_channels`): one 16 kHz waveform
per channel, for call recordings with one party per channel.

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


def _channel_rows(block: _Block) -> list[npt.NDArray[np.float32]]:
    """The block's channels, each float32 at full scale 1.0 (the scaling `_mono` applies)."""
    packed = block.format.packed.name
    rows = block.data if block.format.is_planar else block.data.reshape(-1, block.channels).T
    scale = np.float32(1.0 / _FULL_SCALE.get(packed, 1.0))
    result: list[npt.NDArray[np.float32]] = []
    for row in rows:
        channel = row.astype(np.float32)  # a copy, so it can be shifted and scaled in place
        if packed == "u8":
            channel -= 128.0
        if scale != 1.0:
            channel *= scale
        result.append(channel)
    return result


# Most channels `multichannel` transcribes: a call recording has two, a conference bridge a few;
# beyond this a file is more likely a surround or ambisonic mix than one party per channel.
MAX_CHANNELS = 8


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


class _Channel:
    """One output channel: its samples, and a resampler to 16 kHz while the input rate is another."""

    def __init__(self, samples: _Samples, max_samples: int) -> None:
        self.samples = samples
        self._max_samples = max_samples
        self._resampler: av.AudioResampler | None = None
        self._rate = 0

    def _add(self, chunk: npt.NDArray[np.float32]) -> None:
        if self.samples.size + len(chunk) > self._max_samples:
            raise LimitExceeded(
                f"audio is longer than the limit of {self._max_samples / SAMPLE_RATE:.0f} s",
                reason="DURATION_LIMIT",
            )
        self.samples.append(chunk)

    def push(self, data: npt.NDArray[np.float32], rate: int) -> None:
        """Samples at `rate` Hz; resampled unless already at 16 kHz (one resampler per rate)."""
        if rate == SAMPLE_RATE:
            self._add(data)
            return
        if self._resampler is None or rate != self._rate:
            self.drain()  # the rate changed mid-stream
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self._rate = rate
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        for out in self._resampler.resample(frame):
            self._add(_frame_samples(out))

    def drain(self) -> None:
        """The resampler's last few samples of filter delay (no limit check)."""
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self.samples.append(_frame_samples(out))


def _too_many_channels(count: int) -> InvalidRequest:
    return InvalidRequest(
        f"the audio has {count} channels; multichannel transcribes at most {MAX_CHANNELS} "
        "(one party per channel): send fewer channels, or set multichannel=false to mix them to mono",
        reason="INVALID_FIELD",
    )


def _decode_into(
    container: av.container.InputContainer, max_samples: int, keep_channels: bool
) -> list[_Samples]:
    """The first audio stream at 16 kHz: one buffer (channels averaged), or one per channel."""
    stream = next(iter(container.streams.audio), None)
    if stream is None:
        raise InvalidRequest("the file has no audio stream", reason="AUDIO_UNDECODABLE")
    declared = _declared_seconds(container, stream)
    channels: list[_Channel] = []
    try:
        if not keep_channels:
            channels.append(_Channel(_Samples(declared, max_samples), max_samples))
        for block in _blocks(container.decode(stream)):
            if not keep_channels:
                channels[0].push(_mono(block), block.rate)
                continue
            if not channels:
                if block.channels > MAX_CHANNELS:
                    raise _too_many_channels(block.channels)
                channels = [
                    _Channel(_Samples(declared, max_samples), max_samples) for _ in range(block.channels)
                ]
            if block.channels != len(channels):
                raise InvalidRequest(
                    f"the channel count changes mid-stream ({len(channels)} -> {block.channels}); "
                    "multichannel needs one party per channel throughout: set multichannel=false",
                    reason="AUDIO_UNDECODABLE",
                )
            for channel, row in zip(channels, _channel_rows(block), strict=True):
                channel.push(row, block.rate)
        for channel in channels:
            channel.drain()
    except BaseException:
        for channel in channels:
            channel.samples.discard()
        raise
    finally:
        # also when the duration limit stopped it
        note_audio(seconds=sum(channel.samples.size for channel in channels) / SAMPLE_RATE)
    return [channel.samples for channel in channels]


def _frame_samples(frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def _decode(data: bytes, format_hint: str, limits: AudioLimits | None, keep_channels: bool) -> list[Waveform]:
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
                decoded = _decode_into(container, max_samples, keep_channels)
        except (InvalidRequest, LimitExceeded):
            raise
        except (av.FFmpegError, ValueError, EOFError, OSError) as error:
            last_error = error
            continue
        if not decoded or decoded[0].size == 0:
            raise InvalidRequest(
                "the audio decodes to no samples (empty or truncated file)", reason="AUDIO_UNDECODABLE"
            )
        return [Waveform(samples.take()) for samples in decoded]
    hint = f" as {format_hint!r}" if format_hint else ""
    raise InvalidRequest(
        f"could not decode the audio{hint} ({type(last_error).__name__}); send a common audio file "
        "(wav, flac, mp3, ogg/opus, m4a, webm) or set audio_format",
        reason="AUDIO_UNDECODABLE",
    )


def decode_bytes(data: bytes, format_hint: str = "", limits: AudioLimits | None = None) -> Waveform:
    """Decode any container/codec PyAV reads, at any rate and channel count, to 16 kHz mono."""
    return _decode(data, format_hint, limits, keep_channels=False)[0]


def decode_channels(data: bytes, format_hint: str = "", limits: AudioLimits | None = None) -> list[Waveform]:
    """Like `decode_bytes`, but one 16 kHz waveform per channel (at most MAX_CHANNELS; a mono
    file gives one). Every channel has the same length."""
    return _decode(data, format_hint, limits, keep_channels=True)


def _audio_bytes(
    audio: audio_pb2.Audio, limits: AudioLimits, fetch_policy: FetchPolicy | None, time_budget_s: float | None
) -> bytes:
    source = audio.WhichOneof("source")
    if source == "content":
        return audio.content
    if source == "uri":
        policy = fetch_policy or FetchPolicy(max_bytes=limits.max_bytes)
        if time_budget_s is not None:
            policy = replace(policy, total_timeout_s=min(policy.total_timeout_s, time_budget_s))
        return fetch_bytes(audio.uri, policy)
    raise InvalidRequest(
        "audio is required: set audio.uri (http/https URL) or audio.content (file bytes)",
        reason="AUDIO_MISSING",
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
    return decode_bytes(_audio_bytes(audio, limits, fetch_policy, time_budget_s), audio.format, limits)


def load_channels(
    audio: audio_pb2.Audio,
    limits: AudioLimits | None = None,
    fetch_policy: FetchPolicy | None = None,
    time_budget_s: float | None = None,
) -> list[Waveform]:
    """`load_audio` keeping the channels apart: one 16 kHz waveform per channel (`multichannel`)."""
    limits = limits or AudioLimits()
    return decode_channels(_audio_bytes(audio, limits, fetch_policy, time_budget_s), audio.format, limits)


def encode_flac(waveform: Waveform) -> bytes:
    """A waveform as 16-bit mono FLAC: lossless at 16 bits and about half the size of WAV, for
    sending one channel of a recording to a service that decodes audio itself."""
    pcm = (np.clip(waveform.samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=waveform.sample_rate, layout="mono")
        frame_size = 4096
        for offset in range(0, len(pcm), frame_size):
            frame = av.AudioFrame.from_ndarray(
                pcm[offset : offset + frame_size].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = waveform.sample_rate
            frame.pts = offset
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
