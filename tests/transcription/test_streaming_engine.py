"""Live streaming on NeMo's buffered TDT pipeline gives the batch engine's words, chunk by chunk.

The trained tiny TDT and espeak speech (eval/synth.py) make the words real: a stream must come
out with the words the batch engine writes for the same recording, none lost or doubled at chunk
seams, with streams sharing forward passes and bad settings refused by name.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from eval import synth
from eval.metrics import WordErrors
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.core.times import whole_ms
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.streaming import (
    EndOfUtterance,
    Final,
    Interim,
    StreamEvent,
    StreamingTranscriber,
    _time_merged_state,
)
from parakeet_server.transcription.streaming_config import StreamingConfig, StreamingConfigError
from tests.support.servers import REPO_ROOT

MODEL = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"
RATE = 16_000
PAUSE = np.zeros(RATE // 2, np.float32)
FEED = RATE // 10  # 100 ms packets, as a live client sends them

pytestmark = [pytest.mark.slow, pytest.mark.espeak]


@pytest.fixture(scope="module")
def transcriber() -> StreamingTranscriber:
    return StreamingTranscriber(MODEL, StreamingConfig(), device="cpu")


@pytest.fixture(scope="module")
def engine() -> TranscriptionEngine:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(MODEL), device="cpu"))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    """About 110 words: 20 held-out-style sentences by several voices, half a second apart."""
    utterances = synth.sentence_corpus(777, 20)
    return np.concatenate([part for u in utterances for part in (u.audio, PAUSE)])


def stream(transcriber: StreamingTranscriber, audio: np.ndarray) -> list[StreamEvent]:
    """Feed `audio` in 100 ms packets, stepping whenever a chunk is ready, then close."""
    stream_id = transcriber.open_stream()
    events: list[StreamEvent] = []
    for start in range(0, len(audio), FEED):
        transcriber.feed(stream_id, audio[start : start + FEED])
        while transcriber.ready_streams():
            events += transcriber.step().events
    return events + transcriber.close(stream_id)


def final_words(events: Iterable[StreamEvent]) -> list[str]:
    return [w.word for e in events if isinstance(e, Final) for w in e.words]


def test_streamed_words_are_the_batch_transcript(transcriber, engine, recording) -> None:
    batch = engine.transcribe([recording])[0]
    events = stream(transcriber, recording)
    words = final_words(events)
    errors = WordErrors()
    errors.add(batch.text, " ".join(words))
    assert len(batch.words) >= 100
    assert errors.wer <= 0.01, f"WER {errors.wer:.2%} over {len(batch.words)} words"
    # Every final is followed by its end of utterance; interims came before finals.
    kinds = [type(e) for e in events]
    assert all(kinds[i + 1] is EndOfUtterance for i, kind in enumerate(kinds) if kind is Final)
    assert Interim in kinds


def test_word_times_are_monotonic_whole_ms_and_inside_the_stream(transcriber, recording) -> None:
    events = stream(transcriber, recording)
    words = [w for e in events if isinstance(e, Final) for w in e.words]
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(w.start <= w.end for w in words)
    assert words[0].start >= 0.0 and words[-1].end <= len(recording) / RATE
    assert all(t == whole_ms(t) for w in words for t in (w.start, w.end))
    assert all(w.confidence is not None and 0.0 <= w.confidence <= 1.0 for w in words)


@pytest.mark.parametrize(
    "text",
    [
        "yes please open the kitchen window banana banana apple",
        "coffee coffee coffee green green water",
    ],
)
def test_no_word_lost_or_repeated_at_chunk_seams(transcriber, engine, text: str) -> None:
    """Repeated words and pieces ("ba|an|an|a", "co|f|f|ee") survive a seam between them.

    NeMo's text de-duplication dropped the second of two equal tokens one frame apart on either
    side of a seam ("banana banana" -> "bana" at 550 ms, "coffee" -> "cofee" at 130 ms); steps
    are joined by token time instead (streaming._time_merged_pipeline).
    """
    audio = synth.synthesize(text, synth.VOICES[2])
    assert engine.transcribe([audio])[0].text == text
    # Shifted starts put the chunk seams at every place in the words (a chunk is 800 ms).
    for offset_ms in (0, 130, 270, 330, 410, 550, 690, 770):
        shifted = np.concatenate([np.zeros(offset_ms * RATE // 1000, np.float32), audio])
        batch = engine.transcribe([shifted])[0].text.split()
        assert final_words(stream(transcriber, shifted)) == batch, offset_ms


def test_steps_are_joined_by_token_time() -> None:
    """A token before the seam is dropped; one repeated across it is kept if the word repeats it
    (the new window decoded it before the seam too) and dropped if a window moved it a frame."""
    state = _time_merged_state()()
    state.set_global_offset(-35.0)
    w, b, an, a, ar, m = 1, 2, 3, 4, 5, 6

    def step(tokens: list[int], frames: list[int], seen: list[int]) -> None:  # one step, as NeMo runs it
        state.seen_before_seam = seen  # the window's own tokens before the seam
        state.update_state({"tokens": tokens, "timesteps": frames, "confidences": [1.0] * len(tokens)}, False)
        state.update_from_decoder_results(59, 69)
        state.increment_global_offset(10.0)

    step([b, an], [67, 68], seen=[])  # stream frames 32, 33; committed up to 34
    step([an, a], [59, 60], seen=[b, an])  # frames 34, 35: "ba|an" + "an|a" is "banana"
    assert state.tokens == [b, an, an, a] and state.timesteps == [32, 33, 34, 35]
    step([a, w, ar], [58, 59, 68], seen=[an, an])  # frame 43 was decoded by the previous step
    assert state.tokens[4:] == [w, ar] and state.timesteps[4:] == [44, 53]
    step([ar, m], [59, 60], seen=[w])  # frames 54, 55: "w|ar" + "ar|m" is one "ar", moved
    assert state.tokens[4:] == [w, ar, m] and state.timesteps[-1] == 55


def test_interleaved_streams_share_passes_and_keep_their_words(transcriber, engine) -> None:
    texts = [
        "good morning please call back tomorrow",
        "hello teacher thank you",
        "yes please open the kitchen window",
        "the quick brown fox jumps over the lazy dog",
    ]
    audios = [np.concatenate([synth.synthesize(t, synth.VOICES[i]), PAUSE]) for i, t in enumerate(texts)]
    ids = [transcriber.open_stream() for _ in audios]
    events: list[StreamEvent] = []
    sizes: list[int] = []
    for start in range(0, max(map(len, audios)), FEED):
        for stream_id, audio in zip(ids, audios, strict=True):  # fed alternately, packet by packet
            transcriber.feed(stream_id, audio[start : start + FEED])
        report = transcriber.step()
        events += report.events
        sizes += report.batch_sizes
    for stream_id in ids:
        events += transcriber.close(stream_id)
    assert max(sizes) == len(audios)  # all four streams decoded in one forward pass
    assert sizes.count(len(audios)) >= 2
    for stream_id, audio in zip(ids, audios, strict=True):
        mine = [e for e in events if e.stream == stream_id]
        assert final_words(mine) == engine.transcribe([audio])[0].text.split()


def test_closing_mid_utterance_flushes_its_final(transcriber, engine) -> None:
    audio = synth.synthesize("good morning please call back tomorrow", synth.VOICES[0])
    cut = audio[: int(len(audio) * 0.7)]  # the last word is cut off mid-way
    stream_id = transcriber.open_stream()
    transcriber.feed(stream_id, cut)
    before: list[StreamEvent] = []
    while transcriber.ready_streams():
        before += transcriber.step().events
    flushed = transcriber.close(stream_id)
    assert any(isinstance(e, Final) for e in flushed)
    assert isinstance(flushed[-1], EndOfUtterance) and flushed[-1].at == whole_ms(len(cut) / RATE)
    assert final_words(before + flushed) == engine.transcribe([cut])[0].text.split()
    assert transcriber.open_streams == 0
    with pytest.raises(InvalidRequest):
        transcriber.feed(stream_id, cut)


def test_close_without_audio_and_cancel_leave_nothing_behind(transcriber) -> None:
    assert transcriber.close(transcriber.open_stream()) == []
    stream_id = transcriber.open_stream()
    transcriber.feed(stream_id, np.zeros(RATE * 2, np.float32))
    transcriber.step()
    transcriber.cancel(stream_id)
    assert transcriber.open_streams == 0 and transcriber.ready_streams() == 0


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (
            {"left_context_s": 5.6, "right_context_s": 0.8},
            "left_context_s",
        ),  # 0.8 + 5.6 + 0.8 truncates a sample
        ({"left_context_s": 0.16}, "left_context_s"),
        ({"right_context_s": 0.24}, "right_context_s"),
        ({"chunk_s": 0.1}, "chunk_s"),
        ({"chunk_s": 0.80001}, "chunk_s"),  # not whole samples
        ({"endpoint_silence_ms": 80}, "endpoint_silence_ms"),
        ({"max_utterance_s": 0.5}, "max_utterance_s"),
        ({"max_batch_streams": 0}, "max_batch_streams"),
    ],
)
def test_bad_settings_are_refused_by_name(settings: dict[str, float], named: str) -> None:
    with pytest.raises(StreamingConfigError) as refused:
        StreamingConfig(**settings)  # type: ignore[arg-type]
    assert refused.value.setting == named and named in str(refused.value)
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, InvalidRequest)


def test_sizes_off_the_model_frame_grid_are_refused() -> None:
    StreamingConfig().check_frames(0.08, 0.01)
    with pytest.raises(StreamingConfigError, match="chunk_s"):
        StreamingConfig(chunk_s=0.56).check_frames(0.08, 0.01)  # 0.56 / 0.08 = 7.000000000000001
    with pytest.raises(StreamingConfigError, match="right_context_s"):
        StreamingConfig(right_context_s=0.4).check_frames(0.08, 0.01)
