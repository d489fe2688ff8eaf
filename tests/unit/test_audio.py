"""The shared decoder: any common container/codec, rate and channel count -> 16 kHz mono float32."""

from __future__ import annotations

import re

import av
import numpy as np
import pytest

from services.core.audio import AudioLimits, decode_bytes
from services.core.errors import InvalidRequest, LimitExceeded
from tests.audio_samples import encode as encode_signal
from tests.audio_samples import sweep, tone, wav_bytes


def encode(container: str, codec: str, rate: int, channels: int = 2, seconds: float = 2.0) -> bytes:
    return encode_signal(tone(seconds, rate), container, codec, rate, channels)


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [
        ("wav", "pcm_s16le", 44100),
        ("flac", "flac", 48000),
        ("mp3", "libmp3lame", 44100),
        ("ogg", "libopus", 48000),
        ("ipod", "aac", 44100),
        ("webm", "libopus", 48000),
    ],
)
def test_common_formats_decode_to_16k_mono(container: str, codec: str, rate: int) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    waveform = decode_bytes(encode(container, codec, rate))
    assert waveform.sample_rate == 16000
    assert waveform.samples.dtype == np.float32 and waveform.samples.ndim == 1
    assert abs(waveform.duration - 2.0) < 0.1
    spectrum = np.abs(np.fft.rfft(waveform.samples[4000:20000]))  # 16000 samples: 1 Hz per bin
    assert abs(int(np.argmax(spectrum)) - 440) < 5  # the tone survives resampling


def test_mono_and_multichannel_wav_at_any_rate() -> None:
    samples = sweep(1.0)
    for rate, channels in ((8000, 1), (16000, 1), (32000, 2), (96000, 6)):
        waveform = decode_bytes(wav_bytes(samples, rate=rate, channels=channels))
        assert abs(waveform.duration - len(samples) / rate) < 0.01


def test_a_16k_mono_wav_decodes_to_its_own_samples() -> None:
    samples = sweep(1.0)
    decoded = decode_bytes(wav_bytes(samples)).samples
    assert np.max(np.abs(decoded - samples)) < 1e-4


def test_raw_pcm_needs_and_honours_a_format_hint() -> None:
    pcm = (sweep(1.0) * 32767).astype("<i2").tobytes()
    with pytest.raises(InvalidRequest, match="could not decode the audio"):
        decode_bytes(pcm)
    # s16le has no header, so the hint names the demuxer; PyAV's s16le default is 44.1 kHz mono.
    assert abs(decode_bytes(pcm, "pcm_s16le").duration - 16000 / 44100) < 0.01


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "audio is empty (0 bytes)"),
        (b"this is a text file, not audio" * 20, "could not decode the audio"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "could not decode the audio"),
    ],
)
def test_bad_bytes_are_invalid_with_a_message_to_act_on(data: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        decode_bytes(data)


def test_a_truncated_mp3_decodes_what_is_there() -> None:
    if "libmp3lame" not in av.codecs_available:
        pytest.skip("no mp3 encoder")
    mp3 = encode("mp3", "libmp3lame", 44100, seconds=4.0)
    waveform = decode_bytes(mp3[: len(mp3) // 2])
    assert 1.5 < waveform.duration < 2.5


def test_limits_on_bytes_and_duration() -> None:
    wav = wav_bytes(sweep(3.0))
    with pytest.raises(LimitExceeded, match="the limit is 1000 bytes"):
        decode_bytes(wav, limits=AudioLimits(max_bytes=1000))
    with pytest.raises(LimitExceeded, match="longer than the limit of 2 s"):
        decode_bytes(wav, limits=AudioLimits(max_duration_s=2.0))


def test_nan_and_infinite_float_samples_become_silence_and_full_scale() -> None:

    samples = np.array([np.nan, np.inf, -np.inf, 0.25] * 4000, dtype=np.float32)
    data = encode_signal(samples, "wav", "pcm_f32le", 16000, channels=1)
    decoded = decode_bytes(data).samples
    assert np.isfinite(decoded).all() and np.abs(decoded).max() <= 1.0
    assert decoded[:4].tolist() == pytest.approx([0.0, 1.0, -1.0, 0.25], abs=1e-3)
