"""Audio in any form a request carries -> 16 kHz mono float32 samples, decoded with PyAV.

The one decoder every service and path uses. Bytes are decoded in memory (no temp files);
URLs are fetched by `services.core.fetch`, which refuses internal addresses. Limits on size and
duration are enforced while decoding, so an oversized file stops early instead of filling memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from parakeet.v1 import audio_pb2
from services.core.errors import InvalidRequest, LimitExceeded
from services.core.fetch import FetchPolicy, fetch_bytes

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


def _as_mono(frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def _blocks(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    """Decoded frames joined into ~10 s frames of the same format, layout and rate."""
    pending: list[npt.NDArray[Any]] = []
    pending_samples = 0
    shape: tuple[str, str, int] | None = None

    def flush() -> av.AudioFrame:
        assert shape is not None
        joined = av.AudioFrame.from_ndarray(np.concatenate(pending, axis=1), format=shape[0], layout=shape[1])
        joined.sample_rate = shape[2]
        return joined

    for frame in frames:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if pending and (key != shape or pending_samples >= _RESAMPLE_BLOCK_S * frame.sample_rate):
            yield flush()
            pending, pending_samples = [], 0
        shape = key
        pending.append(frame.to_ndarray())
        pending_samples += frame.samples
    if pending:
        yield flush()


def _resampled_chunks(
    container: av.container.InputContainer, max_samples: int
) -> Iterator[npt.NDArray[np.float32]]:
    stream = next(iter(container.streams.audio), None)
    if stream is None:
        raise InvalidRequest("the file has no audio stream")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    produced = 0
    for block in _blocks(container.decode(stream)):
        for out in resampler.resample(block):
            chunk = _as_mono(out)
            produced += len(chunk)
            if produced > max_samples:
                raise LimitExceeded(f"audio is longer than the limit of {max_samples / SAMPLE_RATE:.0f} s")
            yield chunk
    for out in resampler.resample(None):
        yield _as_mono(out)


def decode_bytes(data: bytes, format_hint: str = "", limits: AudioLimits | None = None) -> Waveform:
    """Decode any container/codec PyAV reads, at any rate and channel count, to 16 kHz mono."""
    limits = limits or AudioLimits()
    if not data:
        raise InvalidRequest("audio is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise LimitExceeded(f"audio is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    max_samples = int(limits.max_duration_s * SAMPLE_RATE)
    demuxers = [_demuxer(format_hint), None] if format_hint else [None]
    last_error: Exception | None = None
    for demuxer in dict.fromkeys(demuxers):
        try:
            with av.open(io.BytesIO(data), mode="r", format=demuxer, options=_OPEN_OPTIONS) as container:
                chunks = list(_resampled_chunks(container, max_samples))
        except (InvalidRequest, LimitExceeded):
            raise
        except (av.FFmpegError, ValueError, EOFError, OSError) as error:
            last_error = error
            continue
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        if samples.size == 0:
            raise InvalidRequest("the audio decodes to no samples (empty or truncated file)")
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)  # float WAVs can hold NaN
        np.clip(samples, -1.0, 1.0, out=samples)
        return Waveform(samples.astype(np.float32, copy=False))
    hint = f" as {format_hint!r}" if format_hint else ""
    raise InvalidRequest(
        f"could not decode the audio{hint} ({type(last_error).__name__}); send a common audio file "
        "(wav, flac, mp3, ogg/opus, m4a, webm) or set audio_format"
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
    raise InvalidRequest("audio is required: set audio.uri (http/https URL) or audio.content (file bytes)")
