"""Audio (and not-quite-audio) files the reliability tests send, made here with PyAV and numpy."""

from __future__ import annotations

import functools
import io
import struct
import wave

import av
import numpy as np
import numpy.typing as npt

from tests.support.audio import SAMPLE_RATE, encode, sweep, tone, wav_bytes


@functools.cache
def good_wav() -> bytes:
    """One second of the tone sweeps the fixture model turns into words."""
    return wav_bytes(sweep(1.0, seed=3))


def empty_wav() -> bytes:
    """A valid WAV header with no frames."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(b"")
    return buffer.getvalue()


def float_wav(samples: npt.NDArray[np.float64], rate: int = SAMPLE_RATE) -> bytes:
    """IEEE-float WAV (format 3), which can carry NaN and infinities."""
    data = np.asarray(samples, dtype="<f4").tobytes()
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32)
        + b"data"
        + struct.pack("<I", len(data))
    )
    return header + data


@functools.cache
def nan_wav() -> bytes:
    return float_wav(np.full(SAMPLE_RATE, np.nan))


@functools.cache
def mp3(seconds: float = 2.0) -> bytes:
    """A 440 Hz tone as MP3 (libmp3lame through PyAV)."""
    return encode(tone(seconds, SAMPLE_RATE), "mp3", "libmp3lame", SAMPLE_RATE, channels=1)


@functools.cache
def video_only() -> bytes:
    """A Matroska file with three tiny video frames and no audio stream."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as output:
        stream = output.add_stream("ffv1", rate=5)
        stream.width = 16
        stream.height = 16
        stream.pix_fmt = "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def hls_playlist(base_url: str) -> bytes:
    """An HLS playlist whose one segment lives on `base_url` (the tests' loopback server)."""
    return (
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{base_url}/segment.wav\n#EXT-X-ENDLIST\n"
    ).encode()


LOCAL_FILE_NAME = "server-side-secret.wav"


def ffconcat_local_file() -> bytes:
    """An FFmpeg concat script naming a file in the server's working directory."""
    return f"ffconcat version 1.0\nfile {LOCAL_FILE_NAME}\n".encode()


NOT_AUDIO = b"this is a text file, not audio. " * 20
RANDOM_BYTES = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
TRUNCATED_WAV_HEADER = b"RIFF\x00\x00\x00\x00WAVEfmt "
