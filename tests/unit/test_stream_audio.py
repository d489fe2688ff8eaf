"""The live-stream audio decoder: raw PCM split anywhere, containers decoded while they arrive."""

from __future__ import annotations

import io
import re
import threading
import time

import av
import numpy as np
import pytest

from parakeet.v1 import streaming_pb2
from parakeet_server.core import stream_audio
from parakeet_server.core.audio import decode_bytes
from parakeet_server.core.errors import InvalidRequest, LimitExceeded
from parakeet_server.core.stream_audio import StreamDecoder, stream_decoder
from tests.support.audio import encode, sweep, tone, wav_bytes

ENC = streaming_pb2.AudioEncoding
S16, F32, CONTAINER = ENC.AUDIO_ENCODING_PCM_S16LE, ENC.AUDIO_ENCODING_PCM_F32LE, ENC.AUDIO_ENCODING_CONTAINER


def fmt(
    encoding: int = 0, rate: int = 0, channels: int = 0, container: str = ""
) -> streaming_pb2.StreamingAudioFormat:
    return streaming_pb2.StreamingAudioFormat(
        encoding=encoding, sample_rate_hz=rate, channels=channels, container=container
    )


def chunks(data: bytes, seed: int = 0, low: int = 1, high: int = 4000) -> list[bytes]:
    rng = np.random.default_rng(seed)
    cuts, at = [], 0
    while at < len(data):
        size = int(rng.integers(low, high + 1))
        cuts.append(data[at : at + size])
        at += size
    return cuts


def run(decoder: StreamDecoder, pieces: list[bytes]) -> np.ndarray:
    try:
        out = [decoder.feed(piece) for piece in pieces]
        out.append(decoder.flush())
    finally:
        decoder.close()
    for part in out:
        assert part.dtype == np.float32 and part.ndim == 1
    return np.concatenate(out)


def s16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2")


def peak_hz(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "stream-audio-decode" and t.is_alive()]


# Raw PCM


def test_16k_mono_s16le_split_at_odd_bytes_is_exact() -> None:
    pcm = s16(sweep(1.0))
    pieces = chunks(pcm.tobytes(), low=1, high=7)  # splits mid-sample over and over
    out = run(stream_decoder(fmt()), pieces)  # UNSPECIFIED, rate 0, channels 0: 16 kHz mono s16le
    assert np.array_equal(out, pcm.astype(np.float32) / 32768)


def test_stereo_is_mixed_to_the_mean_of_its_channels() -> None:
    left, right = s16(sweep(0.5, seed=1)), s16(0.5 * sweep(0.5, seed=2))
    interleaved = np.stack([left, right], axis=1).reshape(-1).tobytes()
    out = run(stream_decoder(fmt(S16, 16000, 2)), chunks(interleaved, low=1, high=9))
    expected = (left.astype(np.float32) + right.astype(np.float32)) / 65536
    assert len(out) == len(left)
    assert np.max(np.abs(out - expected)) < 1e-6


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("encoding", [S16, F32])
def test_any_rate_is_resampled_to_16k_keeping_duration_and_pitch(rate: int, encoding: int) -> None:
    signal = tone(2.0, rate)
    data = (s16(signal) if encoding == S16 else signal.astype("<f4")).tobytes()
    out = run(stream_decoder(fmt(encoding, rate, 1)), chunks(data, seed=rate, low=100, high=3001))
    assert abs(len(out) / 16000 - 2.0) < 0.005
    assert abs(peak_hz(out[4000:28000]) - 440) < 2


def test_f32le_mono_16k_passes_through_exactly() -> None:
    samples = sweep(0.5).astype("<f4")
    out = run(stream_decoder(fmt(F32)), chunks(samples.tobytes(), low=1, high=11))
    assert np.array_equal(out, samples)


# Refusals


@pytest.mark.parametrize(
    ("audio_format", "message"),
    [
        (fmt(S16, 4000), "audio_format.sample_rate_hz: 4000 Hz is out of range; set 8000..192000"),
        (fmt(F32, 384000), "audio_format.sample_rate_hz: 384000 Hz is out of range"),
        (fmt(S16, -16000), "audio_format.sample_rate_hz: -16000 Hz is out of range"),
        (fmt(S16, 16000, 33), "audio_format.channels: 33 is out of range; set 1..32, or 0 for 1"),
        (fmt(S16, 16000, -2), "audio_format.channels: -2 is out of range"),
        (fmt(7), "audio_format.encoding: unknown value 7; use AUDIO_ENCODING_PCM_S16LE"),
        (fmt(S16, container="ogg"), "audio_format.container: 'ogg' is only for AUDIO_ENCODING_CONTAINER"),
        (fmt(CONTAINER, container="hls"), "audio_format.container: 'hls' is not a container this server"),
        (fmt(CONTAINER, container="pcm_s16le"), "audio_format.container: 'pcm_s16le' is not a container"),
    ],
)
def test_bad_formats_are_refused_naming_the_field(
    audio_format: streaming_pb2.StreamingAudioFormat, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)) as caught:
        stream_decoder(audio_format)
    assert caught.value.reason == "INVALID_FIELD"


def test_a_container_ignores_pcm_fields_as_the_contract_says() -> None:
    stream_decoder(fmt(CONTAINER, rate=1, channels=99)).close()


def mp3_without_id3(data: bytes) -> bytes:
    assert data[:3] == b"ID3"
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
    return data[10 + size :]


def container_file(kind: str) -> bytes:
    signal = sweep(1.0, rate=48000)
    codecs = {"ogg": "libopus", "webm": "libopus", "flac": "flac", "mp3": "libmp3lame", "ipod": "aac"}
    if kind == "wav":
        return wav_bytes(sweep(1.0))
    if codecs[kind] not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codecs[kind]} encoder")
    return encode(signal, kind, codecs[kind], 48000 if kind != "mp3" else 44100, 1)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("wav", "a WAV file"),
        ("ogg", "an Ogg file"),
        ("flac", "a FLAC file"),
        ("mp3", "an MP3 file"),
        ("mp3-bare", "an MP3 file"),
        ("webm", "a WebM/Matroska file"),
        ("ipod", "an MP4/M4A file"),
    ],
)
@pytest.mark.parametrize("encoding", [S16, F32])
def test_a_container_sent_as_pcm_is_refused_saying_what_to_set(kind: str, name: str, encoding: int) -> None:
    data = mp3_without_id3(container_file("mp3")) if kind == "mp3-bare" else container_file(kind)
    decoder = stream_decoder(fmt(encoding))
    with pytest.raises(InvalidRequest) as caught:
        for piece in chunks(data[:4000], low=1, high=5):  # the magic arrives a few bytes at a time
            decoder.feed(piece)
    assert caught.value.reason == "AUDIO_ENCODING"
    assert f"looks like {name}; send it with encoding AUDIO_ENCODING_CONTAINER, or send raw PCM" in (
        caught.value.message
    )


def test_pcm_that_starts_like_an_mpeg_frame_header_is_not_refused() -> None:
    # FF FB 90 64 is a valid MPEG-1 layer III header (and two quiet negative samples); no second
    # header follows where its 417-byte frame ends, so this is PCM.
    noise = s16(0.01 * np.random.default_rng(0).standard_normal(8000))
    data = b"\xff\xfb\x90\x64" + noise.tobytes()
    out = run(stream_decoder(fmt()), chunks(data, low=1, high=50))
    assert len(out) == 2 + len(noise)


def test_s16le_sent_as_f32le_is_refused() -> None:
    data = s16(sweep(0.5)).tobytes()
    decoder = stream_decoder(fmt(F32))
    with pytest.raises(InvalidRequest, match="set encoding AUDIO_ENCODING_PCM_S16LE") as caught:
        for piece in chunks(data, high=640):
            decoder.feed(piece)
    assert caught.value.reason == "AUDIO_ENCODING"
    assert "audio_format.encoding is AUDIO_ENCODING_PCM_F32LE but the audio holds" in caught.value.message


@pytest.mark.parametrize("value", [np.nan, np.inf, -100.0])
def test_f32le_samples_that_are_not_audio_are_refused(value: float) -> None:
    samples = np.zeros(100, dtype="<f4")
    samples[50] = value
    with pytest.raises(InvalidRequest, match="AUDIO_ENCODING_PCM_F32LE but the audio holds") as caught:
        stream_decoder(fmt(F32)).feed(samples.tobytes())
    assert caught.value.reason == "AUDIO_ENCODING"


@pytest.mark.parametrize(
    ("audio_format", "data", "message"),
    [
        (fmt(), b"\x01\x02\x03", "ended with 1 bytes left over: s16le needs 2 bytes per sample per channel"),
        (
            fmt(S16, 16000, 2),
            b"\x00" * 14,
            "ended with 2 bytes left over: s16le needs 2 bytes per sample per channel",
        ),
        (
            fmt(F32, 44100),
            b"\x00" * 22,
            "ended with 2 bytes left over: f32le needs 4 bytes per sample per channel",
        ),
    ],
)
def test_a_partial_sample_at_the_end_is_refused(
    audio_format: streaming_pb2.StreamingAudioFormat, data: bytes, message: str
) -> None:
    decoder = stream_decoder(audio_format)
    decoder.feed(data)
    with pytest.raises(InvalidRequest, match=re.escape(message)) as caught:
        decoder.flush()
    assert caught.value.reason == "AUDIO_ENCODING"


# Containers

CONTAINERS = [
    ("wav", "wav", "pcm_s16le", 44100),
    ("flac", "flac", "flac", 48000),
    ("ogg", "ogg", "libopus", 48000),
    ("webm", "webm", "libopus", 48000),
    ("mp3", "mp3", "libmp3lame", 44100),
]


@pytest.mark.parametrize(("hint", "container", "codec", "rate"), CONTAINERS)
@pytest.mark.parametrize("with_hint", [False, True])
def test_containers_in_small_chunks_decode_as_the_whole_file_does(
    hint: str, container: str, codec: str, rate: int, with_hint: bool
) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    data = encode(sweep(3.0, rate=rate), container, codec, rate, 2)
    whole = decode_bytes(data).samples
    out = run(
        stream_decoder(fmt(CONTAINER, container=hint if with_hint else "")), chunks(data, low=1, high=2000)
    )
    assert abs(len(out) - len(whole)) <= 0.040 * 16000
    n = min(len(out), len(whole))
    assert np.corrcoef(out[:n], whole[:n])[0, 1] > 0.99
    assert not decode_threads()


def ogg_opus_in_pages(signal: np.ndarray, page_ms: int) -> bytes:
    """Ogg/opus flushed every `page_ms`, as MediaRecorder does with a timeslice (FFmpeg's default
    pages last 1 s, and no byte of a page can be decoded before the page is complete)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg", options={"page_duration": str(page_ms * 1000)}) as output:
        stream = output.add_stream("libopus", rate=48000, layout="mono")
        for offset in range(0, len(signal), 960):
            frame = av.AudioFrame.from_ndarray(
                signal[None, offset : offset + 960].copy(), format="flt", layout="mono"
            )
            frame.sample_rate = 48000
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def test_ogg_opus_decodes_while_it_is_still_arriving() -> None:
    if "libopus" not in av.codecs_available:
        pytest.skip("this PyAV build has no libopus encoder")
    data = ogg_opus_in_pages(sweep(4.0, rate=48000), page_ms=200)
    decoder = stream_decoder(fmt(CONTAINER))
    try:
        early = sum(len(decoder.feed(piece)) for piece in chunks(data[: len(data) // 2], high=1000))
        rest = sum(len(decoder.feed(piece)) for piece in chunks(data[len(data) // 2 :], high=1000))
        rest += len(decoder.flush())
    finally:
        decoder.close()
    assert abs((early + rest) / 16000 - 4.0) < 0.05
    assert early / 16000 > 1.5  # half the bytes gave most of the first 2 s before flush()


@pytest.mark.parametrize("hint", ["", "ogg", "mp3"])
def test_garbage_is_refused_in_bounded_time(hint: str) -> None:
    garbage = np.random.default_rng(1).bytes(1024 * 1024)
    decoder = stream_decoder(fmt(CONTAINER, container=hint))
    started = time.monotonic()
    try:
        with pytest.raises(InvalidRequest) as caught:
            for piece in chunks(garbage, low=1000, high=8000):
                decoder.feed(piece)
            decoder.flush()
    finally:
        decoder.close()
    assert time.monotonic() - started < 10
    assert caught.value.reason == "AUDIO_ENCODING"
    assert "could not decode the stream" in caught.value.message
    assert (
        "with encoding AUDIO_ENCODING_CONTAINER send ogg/opus, webm/opus, mp3, wav or flac"
        in caught.value.message
    )
    assert not decode_threads()


def test_a_short_text_stream_is_refused_at_flush() -> None:
    decoder = stream_decoder(fmt(CONTAINER))
    decoder.feed(b"hello, this is not audio\n" * 10)
    with pytest.raises(InvalidRequest, match="could not decode the stream") as caught:
        decoder.flush()
    decoder.close()
    assert caught.value.reason == "AUDIO_ENCODING"


def test_close_mid_stream_stops_the_decode_thread() -> None:
    if "libopus" not in av.codecs_available:
        pytest.skip("this PyAV build has no libopus encoder")
    data = encode(sweep(2.0, rate=48000), "webm", "libopus", 48000, 1)
    decoder = stream_decoder(fmt(CONTAINER, container="webm"))
    for piece in chunks(data[: len(data) // 2], high=1000):
        decoder.feed(piece)
    assert decode_threads()  # waiting for more bytes
    started = time.monotonic()
    decoder.close()
    decoder.close()  # idempotent
    assert time.monotonic() - started < 2
    assert not decode_threads()


def test_a_container_stream_without_bytes_ends_empty_without_a_thread() -> None:
    decoder = stream_decoder(fmt(CONTAINER))
    assert len(decoder.flush()) == 0
    decoder.close()
    assert not decode_threads()


def test_the_undecoded_backlog_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_audio, "MAX_BACKLOG_BYTES", 1000)
    decoder = stream_decoder(fmt(CONTAINER))
    with pytest.raises(
        LimitExceeded, match="1001 bytes of audio wait to be decoded; the limit is 1000"
    ) as caught:
        decoder.feed(b"\0" * 1001)
    decoder.close()
    assert caught.value.reason == "PAYLOAD_TOO_LARGE"
