"""The shared decoder: any common container/codec, rate and channel count -> 16 kHz mono float32."""

from __future__ import annotations

import io
import re
import struct

import av
import numpy as np
import pytest

from parakeet_server.core.audio import AudioLimits, _Samples, decode_bytes
from parakeet_server.core.errors import InvalidRequest, LimitExceeded
from tests.support.audio import encode as encode_signal
from tests.support.audio import sweep, tone, wav_bytes


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


# -- any channel count (issue #14, item 7) ------------------------------------------------------


def multichannel_wav(channels: np.ndarray, rate: int, sample_format: str) -> bytes:
    """A WAV of `channels` (shape (n, channels), floats in [-1, 1]) as 16-bit PCM or 32-bit float.

    Written by hand: the wave module has no float WAVs, and a plain (non-extensible) header gives
    FFmpeg no channel layout, which is how such files arrive from recorders and mixing desks."""
    if sample_format == "int16":
        data, tag, width = (np.clip(channels, -1, 1) * 32767).astype("<i2").tobytes(), 1, 2
    else:
        data, tag, width = channels.astype("<f4").tobytes(), 3, 4
    count = channels.shape[1]
    fmt = struct.pack("<HHIIHH", tag, count, rate, rate * count * width, count * width, 8 * width)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


CHANNEL_COUNTS = [1, 2, 3, 6, 8, 9, 11, 16, 32, 64, 96]


@pytest.mark.parametrize("sample_format", ["int16", "float32"])
@pytest.mark.parametrize("count", CHANNEL_COUNTS)
def test_the_same_signal_in_every_channel_decodes_to_that_signal(count: int, sample_format: str) -> None:
    signal = tone(1.0, 16000)  # 0.5 amplitude, 440 Hz
    wav = multichannel_wav(np.repeat(signal[:, None], count, axis=1), 16000, sample_format)
    decoded = decode_bytes(wav).samples
    assert decoded.shape == signal.shape
    assert np.max(np.abs(decoded - signal)) < 1e-4  # 16-bit quantisation is 3e-5


@pytest.mark.parametrize("sample_format", ["int16", "float32"])
@pytest.mark.parametrize("count", CHANNEL_COUNTS)
def test_a_signal_in_one_channel_is_averaged_with_the_silent_ones(count: int, sample_format: str) -> None:
    signal = tone(1.0, 16000)
    channels = np.zeros((len(signal), count), dtype=np.float32)
    channels[:, count // 2] = signal
    decoded = decode_bytes(multichannel_wav(channels, 16000, sample_format)).samples
    assert np.max(np.abs(decoded - signal / count)) < 1e-4


@pytest.mark.parametrize("sample_format", ["int16", "float32"])
@pytest.mark.parametrize("count", [2, 6, 9, 11, 32, 96])
def test_multichannel_at_another_rate_is_averaged_then_resampled(count: int, sample_format: str) -> None:
    rate = 48000
    signal = tone(1.0, rate)
    channels = np.zeros((len(signal), count), dtype=np.float32)
    channels[:, 0] = signal
    channels[:, -1] = signal  # two channels of `count` carry it: 2/count of its amplitude
    decoded = decode_bytes(multichannel_wav(channels, rate, sample_format)).samples
    assert len(decoded) == 16000
    expected = tone(1.0, 16000) * (2 / count if count > 1 else 1)
    # the resampler's filter delays and rounds a little; compare away from the edges
    assert np.max(np.abs(decoded[1000:15000] - expected[1000:15000])) < 0.01 * 2 / count + 2e-3


def test_8_bit_and_24_bit_multichannel_pcm_are_scaled_like_16_bit() -> None:
    signal = tone(0.5, 16000)
    for codec in ("pcm_u8", "pcm_s24le", "pcm_s32le", "pcm_f64le"):
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="wav") as output:
            stream = output.add_stream(codec, rate=16000, layout="stereo")
            frame = av.AudioFrame.from_ndarray(np.stack([signal, signal]), format="fltp", layout="stereo")
            frame.sample_rate = 16000
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                output.mux(packet)
        decoded = decode_bytes(buffer.getvalue()).samples
        tolerance = 1 / 64 if codec == "pcm_u8" else 1e-4
        assert np.max(np.abs(decoded - signal)) < tolerance, codec


# -- one buffer, sized from the container (issue #14, item 5a) ----------------------------------


def test_the_decoded_samples_are_one_array_of_exactly_the_right_size() -> None:
    wav = wav_bytes(sweep(30.0, rate=44100), rate=44100)
    samples = decode_bytes(wav).samples
    assert samples.base is None and samples.flags.owndata and samples.flags.c_contiguous
    assert len(samples) == 30 * 16000


def test_the_buffer_grows_past_a_short_or_missing_declared_duration() -> None:
    chunks = [np.full(16000, i / 100, dtype=np.float32) for i in range(95)]  # 95 s in 1 s chunks
    for declared in (None, 0.5, 10.0, 94.9):
        buffer = _Samples(declared, max_samples=100 * 16000)
        for chunk in chunks:
            buffer.append(chunk)
        samples = buffer.take()
        assert samples.flags.owndata and len(samples) == 95 * 16000, declared
        assert np.array_equal(samples, np.concatenate(chunks)), declared


def test_the_buffer_is_never_sized_past_the_duration_limit() -> None:
    buffer = _Samples(declared_s=10 * 3600.0, max_samples=60 * 16000)
    assert len(buffer._data) == 61 * 16000  # the limit plus a second for the resampler's tail
    buffer.append(np.ones(160, dtype=np.float32))
    samples = buffer.take()
    assert len(samples) == 160 and samples.flags.owndata and np.all(samples == 1.0)


def test_a_file_declaring_more_than_it_holds_is_trimmed_to_what_it_holds() -> None:
    if "libmp3lame" not in av.codecs_available:
        pytest.skip("no mp3 encoder")
    mp3 = encode("mp3", "libmp3lame", 44100, seconds=8.0)
    truncated = mp3[: len(mp3) // 4]
    with av.open(io.BytesIO(truncated)) as container:
        assert container.duration == 8 * av.time_base  # the LAME header still says 8 s
    waveform = decode_bytes(truncated)
    assert waveform.samples.flags.owndata and 1.5 < waveform.duration < 2.5
    assert len(waveform.samples) == waveform.samples.nbytes // 4
