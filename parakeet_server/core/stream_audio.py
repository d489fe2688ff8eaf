"""A live stream's audio bytes -> 16 kHz mono float32 samples, decoded as they arrive.

Raw PCM is cut into whole frames (a remainder waits for the next message), mixed to mono and
resampled with FFmpeg's resampler (16 kHz mono passes through untouched). A container stream
(ogg/opus and webm/opus from browsers, mp3, wav, flac) is decoded by PyAV in a daemon thread that
reads a blocking pipe `feed()` writes to: FFmpeg's demuxers read synchronously. `feed()` waits
(at most `_FEED_WAIT_S`) until that thread has decoded all it can and wants more bytes, so it
returns what the bytes fed so far complete. Undecoded bytes are capped at `MAX_BACKLOG_BYTES`;
past it `feed()` raises LimitExceeded PAYLOAD_TOO_LARGE rather than block the caller. An mp4
whose index comes last cannot be streamed (FFmpeg needs to seek to it): send fragmented mp4.
"""

from __future__ import annotations

import threading
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt

from parakeet.v1 import streaming_pb2
from parakeet_server.core.audio import _OPEN_OPTIONS, AUDIO_DEMUXERS, SAMPLE_RATE, _Block, _demuxer, _mono
from parakeet_server.core.errors import InvalidRequest, LimitExceeded, ServiceError

Samples = npt.NDArray[np.float32]
_EMPTY: Samples = np.zeros(0, dtype=np.float32)

MAX_BACKLOG_BYTES = 8 * 1024 * 1024
_FEED_WAIT_S = 2.0  # a feed returns after this even if decoding lags; the rest comes later
_FLUSH_WAIT_S = 30.0  # decoding the backlog's last bytes (at most MAX_BACKLOG_BYTES)
_CLOSE_WAIT_S = 5.0
# Small probes, so decoding starts after ~0.2 s of audio and garbage fails after 128 KiB, not 5 MB.
_STREAM_OPTIONS = {
    **_OPEN_OPTIONS,
    "probesize": "65536",
    "formatprobesize": "131072",
    "analyzeduration": "200000",
}
_CONTAINERS = sorted(set(AUDIO_DEMUXERS.split(",")) - {"s16le", "f32le"})
_MAX_F32 = 64.0  # s16 samples read as float32 are NaN, inf or huge; real float audio is near [-1, 1]

_ENC = streaming_pb2.AudioEncoding
_PCM_NAMES = {_ENC.AUDIO_ENCODING_PCM_S16LE: "s16le", _ENC.AUDIO_ENCODING_PCM_F32LE: "f32le"}

# (what the bytes look like, (offset, magic) that all match)
_SIGNATURES = (
    ("a WAV file", ((0, b"RIFF"), (8, b"WAVE"))),
    ("an Ogg file", ((0, b"OggS"),)),
    ("a FLAC file", ((0, b"fLaC"),)),
    ("an MP3 file", ((0, b"ID3"),)),
    ("a WebM/Matroska file", ((0, b"\x1a\x45\xdf\xa3"),)),
    ("an MP4/M4A file", ((4, b"ftyp"),)),
)
# Layer III bit rates (kbit/s) by index: MPEG-2/2.5, MPEG-1; sample rates of MPEG-1 (2 halves, 2.5 quarters).
_MP3_KBPS = (
    (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
)
_MP3_RATES = (44100, 48000, 32000)


class StreamDecoder(Protocol):
    def feed(self, data: bytes) -> Samples:
        """The samples these (and earlier) bytes complete; often empty."""

    def flush(self) -> Samples:
        """The audio ended: the rest (resampler tail, the container's last packets)."""

    def close(self) -> None:
        """Free the decode thread and buffers; idempotent, safe after flush() or mid-stream."""


def stream_decoder(audio_format: streaming_pb2.StreamingAudioFormat) -> StreamDecoder:
    """The decoder for a stream's configured format; InvalidRequest INVALID_FIELD for a bad field."""
    encoding = audio_format.encoding or _ENC.AUDIO_ENCODING_PCM_S16LE
    if encoding == _ENC.AUDIO_ENCODING_CONTAINER:
        hint = audio_format.container
        demuxer = _demuxer(hint)
        if demuxer is not None and demuxer not in _CONTAINERS:
            raise _field(
                "container",
                f"{hint!r} is not a container this server reads; use one of "
                f"{', '.join(['webm', *_CONTAINERS])}, or leave it empty to detect",
            )
        return _ContainerDecoder(demuxer)
    if encoding not in _PCM_NAMES:
        raise _field(
            "encoding",
            f"unknown value {encoding}; use AUDIO_ENCODING_PCM_S16LE, "
            "AUDIO_ENCODING_PCM_F32LE or AUDIO_ENCODING_CONTAINER",
        )
    rate, channels = audio_format.sample_rate_hz or SAMPLE_RATE, audio_format.channels or 1
    if not 8000 <= rate <= 192_000:
        raise _field("sample_rate_hz", f"{rate} Hz is out of range; set 8000..192000, or 0 for 16000")
    if not 1 <= channels <= 32:
        raise _field("channels", f"{channels} is out of range; set 1..32, or 0 for 1")
    if audio_format.container:
        raise _field(
            "container",
            f"{audio_format.container!r} is only for AUDIO_ENCODING_CONTAINER; "
            "remove it, or set encoding AUDIO_ENCODING_CONTAINER",
        )
    return _PcmDecoder(_PCM_NAMES[encoding], rate, channels)


def _field(name: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"audio_format.{name}: {problem}", reason="INVALID_FIELD")


def _encoding_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, reason="AUDIO_ENCODING")


def _mp3_frame_length(head: bytes) -> int | None:
    """Bytes in the MPEG layer III frame `head` starts with; None when it starts with no such header."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    kbps_index, rate_index = head[2] >> 4, (head[2] >> 2) & 3
    if version == 1 or layer != 1 or kbps_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    rate = _MP3_RATES[rate_index] >> {3: 0, 2: 1, 0: 2}[version]
    return (144 if mpeg1 else 72) * _MP3_KBPS[mpeg1][kbps_index] * 1000 // rate + ((head[2] >> 1) & 1)


def _sniff(head: bytes) -> tuple[str | None, int]:
    """(the container `head` starts like, or None; how many bytes deciding that needs).

    A lone MPEG sync word is also a quiet negative s16 sample, so mp3 needs a second frame header
    where the first frame ends."""
    for name, parts in _SIGNATURES:
        if all(head[offset : offset + len(magic)] == magic for offset, magic in parts):
            return name, 0
    frame = _mp3_frame_length(head)
    if frame is not None:
        if _mp3_frame_length(head[frame : frame + 4]) is not None:
            return "an MP3 file", 0
        return None, frame + 4
    return None, 12


class _Resampler:
    """Mono float32 at any rate -> 16 kHz, incrementally; a new FFmpeg resampler when the rate changes."""

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._rate = SAMPLE_RATE

    def __call__(self, mono: Samples, rate: int) -> Samples:
        out = [self.flush()] if self._resampler is not None and rate != self._rate else []
        if rate == SAMPLE_RATE:  # exact: no filter, no delay
            return _join([*out, mono])
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self._rate = rate
        if len(mono):
            frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = rate
            out += [_frame_samples(f) for f in self._resampler.resample(frame)]
        return _join(out)

    def flush(self) -> Samples:
        resampler, self._resampler, self._rate = self._resampler, None, SAMPLE_RATE
        return _EMPTY if resampler is None else _join([_frame_samples(f) for f in resampler.resample(None)])


def _frame_samples(frame: av.AudioFrame) -> Samples:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def _join(chunks: list[Samples]) -> Samples:
    out = np.concatenate(chunks) if chunks else _EMPTY
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(out, -1.0, 1.0, out=out)


class _PcmDecoder:
    def __init__(self, name: str, rate: int, channels: int) -> None:
        self._name, self._rate, self._channels = name, rate, channels
        self._dtype = np.dtype("<i2" if name == "s16le" else "<f4")
        self._frame_bytes = self._dtype.itemsize * channels
        self._pending = bytearray()
        self._head_checked = False
        self._resampler = _Resampler()

    def feed(self, data: bytes) -> Samples:
        self._pending += data
        if not self._head_checked and not self._check_head(final=False):
            return _EMPTY
        usable = len(self._pending) - len(self._pending) % self._frame_bytes
        if not usable:
            return _EMPTY
        raw = np.frombuffer(bytes(self._pending[:usable]), dtype=self._dtype)
        del self._pending[:usable]
        if self._name == "f32le":
            bad = ~np.isfinite(raw) | (np.abs(raw) > _MAX_F32)
            if bad.any():
                raise _encoding_error(
                    f"audio_format.encoding is AUDIO_ENCODING_PCM_F32LE but the audio holds {raw[bad][0]} "
                    "(float samples are in [-1, 1]; s16le sent as f32le reads like this): set encoding "
                    "AUDIO_ENCODING_PCM_S16LE, or send float32 samples"
                )
            mono = raw.astype(np.float32)
        else:
            mono = raw.astype(np.float32) * np.float32(1 / 32768)
        if self._channels > 1:
            mono = mono.reshape(-1, self._channels).mean(axis=1, dtype=np.float32)
        return self._resampler(mono, self._rate)

    def _check_head(self, final: bool) -> bool:
        """Whether the head is known not to be a container's; raises AUDIO_ENCODING when it is one."""
        name, needed = _sniff(bytes(self._pending[:2048]))
        if name is not None:
            raise _encoding_error(
                f"the audio looks like {name}; send it with encoding AUDIO_ENCODING_CONTAINER, or send raw "
                f"PCM ({self._name}, as audio_format.encoding says)"
            )
        self._head_checked = final or len(self._pending) >= needed
        return self._head_checked

    def flush(self) -> Samples:
        self._check_head(final=True)
        out = self.feed(b"")
        if self._pending:
            size = self._dtype.itemsize
            raise _encoding_error(
                f"the audio ended with {len(self._pending)} bytes left over: {self._name} needs {size} bytes "
                f"per sample per channel ({self._frame_bytes} per frame of {self._channels} channel(s)); "
                "send whole samples"
            )
        return _join([out, self._resampler.flush()])

    def close(self) -> None:
        self._pending.clear()


class _ContainerDecoder:
    """PyAV decodes in a daemon thread, reading the bytes `feed()` writes (see the module docstring)."""

    def __init__(self, demuxer: str | None) -> None:
        self._demuxer = demuxer
        self._cond = threading.Condition()
        self._buffer = bytearray()
        self._eof = self._closed = self._starved = self._done = False
        self._out: list[Samples] = []
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def read(self, size: int) -> bytes:  # called by FFmpeg, in the decode thread
        with self._cond:
            while not self._buffer and not self._eof:
                self._starved = True
                self._cond.notify_all()
                self._cond.wait()
            self._starved = False
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            return chunk

    def _run(self) -> None:
        resample = _Resampler()
        try:
            with av.open(self, mode="r", format=self._demuxer, options=_STREAM_OPTIONS) as container:
                stream = next(iter(container.streams.audio), None)
                if stream is None:
                    raise _encoding_error(
                        "the stream has no audio; send audio with encoding AUDIO_ENCODING_CONTAINER"
                    )
                for frame in container.decode(stream):
                    if self._closed:
                        return
                    block = _Block(
                        frame.to_ndarray(), frame.format, frame.layout.nb_channels, frame.sample_rate
                    )
                    self._emit(resample(_mono(block), frame.sample_rate))
                self._emit(resample.flush())
        except ServiceError as error:
            self._error = error
        except (av.FFmpegError, ValueError, EOFError, OSError) as error:
            as_what = f" as {self._demuxer!r}" if self._demuxer else ""
            self._error = _encoding_error(
                f"could not decode the stream{as_what} ({type(error).__name__}); with encoding "
                "AUDIO_ENCODING_CONTAINER send ogg/opus, webm/opus, mp3, wav or flac, or set the "
                "encoding to the raw PCM you send"
            )
        except Exception as error:
            self._error = error
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _emit(self, samples: Samples) -> None:
        if len(samples):
            with self._cond:
                self._out.append(samples)

    def _take(self) -> Samples:
        with self._cond:
            if self._error is not None and not self._closed:
                raise self._error
            out, self._out = self._out, []
        return _join(out)

    def feed(self, data: bytes) -> Samples:
        if not data:
            return self._take()
        with self._cond:
            if len(self._buffer) + len(data) > MAX_BACKLOG_BYTES:
                raise LimitExceeded(
                    f"{len(self._buffer) + len(data)} bytes of audio wait to be decoded; the limit is "
                    f"{MAX_BACKLOG_BYTES} bytes: send audio no faster than it plays",
                    reason="PAYLOAD_TOO_LARGE",
                )
            self._buffer += data
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stream-audio-decode", daemon=True)
                self._thread.start()
            self._cond.wait_for(lambda: (self._starved and not self._buffer) or self._done, _FEED_WAIT_S)
        return self._take()

    def flush(self) -> Samples:
        if self._thread is None:
            return _EMPTY
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        self._thread.join(_FLUSH_WAIT_S)
        if self._thread.is_alive():
            self.close()
            raise _encoding_error(f"the stream's last bytes did not decode within {_FLUSH_WAIT_S:.0f} s")
        return self._take()

    def close(self) -> None:
        with self._cond:
            self._closed = self._eof = True
            self._buffer.clear()
            self._out.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(_CLOSE_WAIT_S)
