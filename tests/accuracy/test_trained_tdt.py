"""The committed tiny TDT model, trained on espeak-ng speech, transcribes held-out sentences correctly.

Real accuracy through the production path (WAV bytes -> TranscriptionServicer -> micro-batching
runner -> TranscriptionEngine -> NeMo TDT decoding), which the random-weight fixture cannot test.
The sentences are new word orders (none was in the training set) from the same vocabulary and
voices; see tests/fixtures/train_tdt.py for the recipe.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from eval import synth
from eval.metrics import word_error_rate
from parakeet.v1 import audio_pb2, transcription_pb2
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.context import JobContext
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.fixtures.train_tdt import RECIPE, TEST_SEED, TRAIN_SEED
from tests.support.audio import wav_bytes
from tests.support.servers import REPO_ROOT

MODEL = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"
WER_FLOOR = 0.10

pytestmark = [
    pytest.mark.slow,
    pytest.mark.espeak,
]


@pytest.fixture(scope="module")
def servicer() -> Iterator[TranscriptionServicer]:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(MODEL), device="cpu"))
    engine.load()
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=8, max_wait_ms=20.0))
    yield TranscriptionServicer(runner)
    runner.close()


def transcribe(servicer: TranscriptionServicer, audio) -> transcription_pb2.TranscribeResponse:
    request = transcription_pb2.TranscribeRequest(
        audio=audio_pb2.Audio(content=wav_bytes(audio)), word_timestamps=True
    )
    return servicer.Transcribe(request, JobContext(60.0))


def training_texts() -> list[str]:
    return synth.sentences(TRAIN_SEED + RECIPE.seed, RECIPE.train_sentences)


def test_held_out_word_error_rate(servicer) -> None:
    held_out = synth.sentence_corpus(TEST_SEED + RECIPE.seed, 20, exclude=training_texts())
    assert not {u.text for u in held_out} & set(training_texts())
    with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent calls share micro-batches
        responses = list(pool.map(lambda u: transcribe(servicer, u.audio), held_out))
    references = [u.text for u in held_out]
    hypotheses = [response.text for response in responses]
    wer = word_error_rate(references, hypotheses)
    report = "\n".join(f"{r!r} -> {h!r}" for r, h in zip(references, hypotheses, strict=True) if r != h)
    assert wer <= WER_FLOOR, f"WER {wer:.1%} > {WER_FLOOR:.0%}\n{report}"


@pytest.mark.parametrize(
    ("text", "voice"),
    [
        ("good morning please call back tomorrow", synth.VOICES[1]),
        ("hello teacher thank you", synth.VOICES[5]),
        ("yes please open the kitchen window", synth.VOICES[7]),
    ],
)
def test_exact_transcript_and_word_times(servicer, text: str, voice: synth.Voice) -> None:
    assert text not in set(training_texts())
    audio = synth.synthesize(text, voice)
    response = transcribe(servicer, audio)
    assert response.text == text
    assert [w.word for w in response.words] == text.split()
    starts = [w.start for w in response.words]
    assert starts == sorted(starts)
    duration = len(audio) / 16_000
    assert starts[0] >= 0.0
    assert response.words[-1].end <= duration + 0.2


def test_model_is_small() -> None:
    assert Path(MODEL).stat().st_size <= 10 * 1024 * 1024
