"""multichannel on TranscribeRequest: a stereo call, one party per channel, with crosstalk.

The trained tiny TDT (eval/assets) on tests/support/stereo_call.py: each channel's words are
exactly the words its party said, carry their channel and speaker CHANNEL_n, come back in time
order, and both channels went through the model in one batch. The other party's speech leaks
into each channel at -20 dB; the model alone transcribes most of it (measured here), the
service drops it. Default requests still mix to mono, bit for bit as before.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import av
import numpy as np
import pytest

from parakeet.v1 import audio_pb2, transcription_pb2
from parakeet_server.core.audio import MAX_CHANNELS, decode_bytes, decode_channels, encode_flac
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.context import JobContext
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.support.audio import sweep, wav_bytes
from tests.support.servers import REPO_ROOT
from tests.support.stereo_call import StereoCall, stereo_call

MODEL = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"


@pytest.fixture(scope="module")
def servicer() -> Iterator[TranscriptionServicer]:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(MODEL), device="cpu"))
    engine.load()
    engine.warm_up()
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=8, max_wait_ms=20.0))
    yield TranscriptionServicer(runner)
    runner.close()


@pytest.fixture(scope="module")
def call() -> StereoCall:
    return stereo_call()


def transcribe(
    servicer: TranscriptionServicer, content: bytes, **fields: object
) -> transcription_pb2.TranscribeResponse:
    request = transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=content), **fields)
    return servicer.Transcribe(request, JobContext())


def leaked(call: StereoCall, response: transcription_pb2.TranscribeResponse, channel: int) -> list[str]:
    """Words on `channel` said while only the other party spoke (their midpoint in another
    channel's turn and in none of this channel's): crosstalk the transcript kept."""

    def inside(point: float, owner: int) -> bool:
        return any(turn.start <= point <= turn.end for turn in call.turns if turn.channel == owner)

    return [
        word.word
        for word in response.words
        if word.channel == channel
        and inside((word.start + word.end) / 2, 1 - channel)
        and not inside((word.start + word.end) / 2, channel)
    ]


# --- decoding (no model) ---------------------------------------------------------------------


def _stereo(left: np.ndarray, right: np.ndarray, rate: int = 16_000) -> bytes:
    pcm = np.stack([left, right], axis=1).astype("<i2")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def test_channels_are_decoded_apart_and_the_default_downmix_is_unchanged() -> None:
    rng = np.random.default_rng(7)
    left = rng.integers(-20_000, 20_000, 16_000, dtype=np.int16)
    right = rng.integers(-20_000, 20_000, 16_000, dtype=np.int16)
    data = _stereo(left, right)
    channels = decode_channels(data)
    assert [c.samples.tolist() for c in channels] == [
        (left / np.float32(32768)).astype(np.float32).tolist(),
        (right / np.float32(32768)).astype(np.float32).tolist(),
    ]
    # the mono downmix as it has always been computed: channels summed in float32, then scaled
    expected = left.astype(np.float32)
    expected += right
    expected *= np.float32(1.0 / (32768.0 * 2))
    assert np.array_equal(decode_bytes(data).samples, expected)


def test_more_than_eight_channels_is_refused_with_the_count() -> None:
    with pytest.raises(InvalidRequest) as raised:
        decode_channels(wav_bytes(sweep(1.0), channels=MAX_CHANNELS + 1))
    assert raised.value.reason == "INVALID_FIELD"
    assert raised.value.message.startswith("the audio has 9 channels; multichannel transcribes at most 8")
    assert len(decode_channels(wav_bytes(sweep(1.0), channels=MAX_CHANNELS))) == 8
    assert decode_bytes(wav_bytes(sweep(1.0), channels=MAX_CHANNELS + 1)).duration == 1.0  # mono: any count


def test_encode_flac_is_lossless_at_16_bits() -> None:
    waveform = decode_channels(_stereo(np.arange(-8000, 8000, dtype=np.int16), np.zeros(16_000, np.int16)))[0]
    assert np.array_equal(decode_bytes(encode_flac(waveform), "flac").samples, waveform.samples)


# --- the service, with the tiny trained model ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.espeak
def test_each_channel_has_exactly_its_partys_words_in_one_batch(
    servicer: TranscriptionServicer, call: StereoCall
) -> None:
    response = transcribe(servicer, call.wav(), multichannel=True, word_timestamps=True)
    assert servicer.runner.batcher.batch_sizes[-1] == 2  # both channels in one forward pass
    for channel in (0, 1):
        assert [w.word for w in response.words if w.channel == channel] == call.words(channel)
    assert all(w.HasField("channel") and w.speaker == f"CHANNEL_{w.channel}" for w in response.words)
    assert all(s.HasField("channel") and s.speaker == f"CHANNEL_{s.channel}" for s in response.segments)
    starts = [w.start for w in response.words]
    assert starts == sorted(starts)
    assert [s.id for s in response.segments] == list(range(len(response.segments)))
    assert [s.start for s in response.segments] == sorted(s.start for s in response.segments)
    assert response.text == " ".join(s.text for s in response.segments)
    # the channels interleave: turns alternate between the parties
    assert [s.channel for s in response.segments] == [0, 1, 0, 1, 0, 1]
    assert response.duration == round(len(call.channels[0]) / 16_000, 3)
    assert list(response.warnings) == []


@pytest.mark.slow
@pytest.mark.espeak
def test_crosstalk_the_model_hears_is_dropped(servicer: TranscriptionServicer, call: StereoCall) -> None:
    # The model alone on one channel transcribes the other party's -20 dB leak (measured: most of it)
    alone = [transcribe(servicer, call.channel_wav(channel), word_timestamps=True) for channel in (0, 1)]
    for channel, response in enumerate(alone):
        for word in response.words:
            word.channel = channel  # mono responses carry none; label them to measure the leak
    assert len(leaked(call, alone[0], 0)) >= 10 and len(leaked(call, alone[1], 1)) >= 4
    response = transcribe(servicer, call.wav(), multichannel=True, word_timestamps=True)
    assert leaked(call, response, 0) == [] and leaked(call, response, 1) == []


@pytest.mark.slow
@pytest.mark.espeak
def test_documents_name_the_channels(servicer: TranscriptionServicer, call: StereoCall) -> None:
    response = transcribe(
        servicer, call.wav(), multichannel=True, response_format=audio_pb2.RESPONSE_FORMAT_TEXT
    )
    lines = response.document.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"CHANNEL_{i % 2}" for i in range(6)]
    assert lines[0] == "CHANNEL_0: " + call.turns[0].text


@pytest.mark.slow
@pytest.mark.espeak
def test_default_mixes_to_mono_and_mono_input_is_channel_0(
    servicer: TranscriptionServicer, call: StereoCall
) -> None:
    mixed = transcribe(servicer, call.wav(), word_timestamps=True)
    assert not any(w.HasField("channel") or w.speaker for w in mixed.words)
    assert not any(s.HasField("channel") or s.speaker for s in mixed.segments)
    mono = call.channel_wav(0)
    plain = transcribe(servicer, mono, word_timestamps=True)
    single = transcribe(servicer, mono, multichannel=True, word_timestamps=True)
    assert list(single.warnings) == ["multichannel: the audio has one channel, transcribed as CHANNEL_0"]
    assert [(w.word, w.start, w.end) for w in single.words] == [(w.word, w.start, w.end) for w in plain.words]
    assert {(w.channel, w.speaker) for w in single.words} == {(0, "CHANNEL_0")}
    assert single.text == plain.text


@pytest.mark.slow
@pytest.mark.espeak
def test_speaker_turns_with_multichannel_are_refused(
    servicer: TranscriptionServicer, call: StereoCall
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        transcribe(
            servicer,
            call.wav(),
            multichannel=True,
            diarization_segments=[audio_pb2.SpeakerTurn(start=0.0, end=1.0, speaker="A")],
        )
    assert raised.value.reason == "INVALID_FIELD"
    assert raised.value.message.startswith("diarization_segments cannot be combined with multichannel")
