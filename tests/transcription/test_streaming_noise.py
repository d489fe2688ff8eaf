"""Live streams transcribe noisy speech as well as the batch engine does on the same audio.

Why: at 15 dB SNR a stream of one held-out sentence and its noisy tail came out with made-up words
after the sentence ("quiet river city ture") and WER 10.6 % against 3.2 % for the batch engine on
the same audio. Closing a stream appends silence so that NeMo's last frame holds no words; that
silence was counted as audio in the last windows, pulling their per-window feature normalization
towards digital zeros and showing the encoder an edge from noise to zeros. The noise here covers
the whole stream, as a microphone's does (digital silence between noisy sentences is a different
matter: the tiny TDT, trained with noise over its padding, garbles it in batch as well).
"""

from __future__ import annotations

import numpy as np
import pytest

from eval import hotwords as measure
from eval import synth
from eval.metrics import word_error_rate
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.streaming import Final, StreamingTranscriber
from parakeet_server.transcription.streaming_config import StreamingConfig
from tests.fixtures.train_tdt import RECIPE, TRAIN_SEED
from tests.support.servers import REPO_ROOT

MODEL = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"
RATE = 16_000
SNR_DB = 15.0
TAIL_S = 0.5  # noise after each sentence before the stream closes: over the 400 ms endpoint

pytestmark = [pytest.mark.slow, pytest.mark.espeak]


@pytest.fixture(scope="module")
def noisy() -> list[tuple[str, np.ndarray]]:
    """16 held-out sentences, each with its noisy tail, white noise over all of it at SNR_DB."""
    training = set(synth.sentences(TRAIN_SEED + RECIPE.seed, RECIPE.train_sentences))
    corpus = synth.sentence_corpus(measure.MEASURE_SEED, 16, exclude=training)
    rng = np.random.default_rng(measure.MEASURE_SEED)
    out = []
    for utterance in corpus:
        power = float(np.mean(utterance.audio.astype(np.float64) ** 2))
        audio = np.concatenate([utterance.audio, np.zeros(round(TAIL_S * RATE), np.float32)])
        noise = rng.standard_normal(len(audio)) * np.sqrt(power / 10 ** (SNR_DB / 10))
        out.append((utterance.text, (audio + noise).astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def transcriber() -> StreamingTranscriber:
    return StreamingTranscriber(MODEL, StreamingConfig(), device="cpu")


@pytest.fixture(scope="module")
def batch(noisy: list[tuple[str, np.ndarray]]) -> list[str]:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(MODEL), device="cpu"))
    engine.load()
    return [result.text for result in engine.transcribe([audio for _, audio in noisy])]


@pytest.fixture(scope="module")
def streamed(transcriber: StreamingTranscriber, noisy: list[tuple[str, np.ndarray]]) -> list[str]:
    """Each recording on its own stream, all stepped together, then closed."""
    ids = []
    for _, audio in noisy:
        ids.append(transcriber.open_stream())
        transcriber.feed(ids[-1], audio)
    events = []
    while transcriber.ready_streams():
        events += transcriber.step().events
    for stream_id in ids:
        events += transcriber.close(stream_id)
    words: dict[int, list[str]] = {stream_id: [] for stream_id in ids}
    for event in events:
        if isinstance(event, Final):
            words[event.stream] += [word.word for word in event.words]
    return [" ".join(words[stream_id]) for stream_id in ids]


def test_noisy_streams_are_within_three_points_of_batch(
    noisy: list[tuple[str, np.ndarray]], batch: list[str], streamed: list[str]
) -> None:
    references = [text for text, _ in noisy]
    batch_wer = word_error_rate(references, batch)
    stream_wer = word_error_rate(references, streamed)
    assert batch_wer <= 0.05, f"batch WER {batch_wer:.2%}: the noisy set is not the measured one"
    # Measured: 4.26 % vs 2.13 % (before the fix 9.57 %).
    assert stream_wer - batch_wer <= 0.03, (
        f"streamed WER {stream_wer:.2%} vs batch {batch_wer:.2%}: "
        + "; ".join(f"{r!r} -> {s!r}" for r, s in zip(references, streamed, strict=True) if r != s)
    )


def test_a_noisy_tail_ends_without_made_up_words(
    noisy: list[tuple[str, np.ndarray]], streamed: list[str]
) -> None:
    """Before the close's silence was left out: 'quiet river city ture'."""
    index = next(i for i, (text, _) in enumerate(noisy) if text == "quiet river city")
    assert streamed[index] == "quiet river city"


def test_closed_streams_leave_no_appended_silence_behind(
    transcriber: StreamingTranscriber, streamed: list[str]
) -> None:
    assert transcriber.open_streams == 0
    assert transcriber._pipeline.appended_silence == {}
