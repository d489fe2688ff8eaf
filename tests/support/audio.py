"""Test audio made here, deterministic from a seed: speech-like tone sweeps, noise, silence, WAV bytes."""

from __future__ import annotations

import functools
import io
import wave

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000


def sweep(seconds: float, seed: int = 0, rate: int = SAMPLE_RATE) -> npt.NDArray[np.float32]:
    """A gated frequency sweep: syllable-like bursts the fixture model turns into words."""
    t = np.arange(int(seconds * rate)) / rate
    frequency = 200 + 300 * np.sin(2 * np.pi * 0.7 * t + seed)
    gate = np.sin(2 * np.pi * 2 * t + seed) > 0
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * np.cumsum(frequency) / rate) * gate + 0.01 * noise).astype(np.float32)


def wav_bytes(samples: npt.NDArray[np.float32], rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    """16-bit PCM WAV; with channels > 1 the signal is copied to every channel."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm[:, None], channels, axis=1).reshape(-1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()


def encode(
    signal: npt.NDArray[np.float32], container: str, codec: str, rate: int, channels: int = 2
) -> bytes:
    """`signal` (at `rate`) encoded with PyAV, copied to every channel: the same library the service
    decodes with, so tests need no external tools."""
    import av

    buffer = io.BytesIO()
    layout = "stereo" if channels == 2 else "mono"
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout=layout)
        planes = np.stack([signal.astype(np.float32)] * channels)
        frame_size = stream.codec_context.frame_size or 4096
        for offset in range(0, planes.shape[1], frame_size):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planes[:, offset : offset + frame_size]), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def tone(seconds: float, rate: int, frequency: float = 440.0) -> npt.NDArray[np.float32]:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@functools.cache
def silent_flac(seconds: float, rate: int = SAMPLE_RATE) -> bytes:
    """Mono 16-bit FLAC of digital silence, encoded in 10 s blocks (3 hours: ~2 MB, a few seconds).

    Cached: the duration-limit tests and the memory benchmark send the same hours more than once."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as output:
        stream = output.add_stream("flac", rate=rate, layout="mono")
        block = np.zeros((1, rate * 10), dtype=np.int16)
        total = int(seconds * rate)
        for offset in range(0, total, block.shape[1]):
            frame = av.AudioFrame.from_ndarray(
                block[:, : min(block.shape[1], total - offset)], format="s16", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()
