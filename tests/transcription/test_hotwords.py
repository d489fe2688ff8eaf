"""Hotwords (phrase boosting): validation, unchanged output without them, per-utterance boosting in
shared batches, and the accuracy floors measured with the tiny trained TDT (see eval/hotwords.py)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from eval import hotwords as measure
from eval import synth
from parakeet.hotwords import DEFAULT_BOOST, MAX_HOTWORDS, MAX_PHRASE_CHARS
from parakeet.v1 import audio_pb2, transcription_pb2
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.context import JobContext
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.hotwords import Hotword, check_hotwords
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.fixtures.train_tdt import RECIPE, TRAIN_SEED
from tests.support.audio import wav_bytes


def training_texts() -> list[str]:
    return synth.sentences(TRAIN_SEED + RECIPE.seed, RECIPE.train_sentences)


# Picked by `python -m eval.hotwords` (lowest recall on its pick split, noisy held-out speech).
BOOSTED = ("world", "early", "family", "rain", "letter", "start")
FLOOR_BOOST = 0.5


def hotword(phrase: str, boost: float | None = None) -> audio_pb2.Hotword:
    return (
        audio_pb2.Hotword(phrase=phrase) if boost is None else audio_pb2.Hotword(phrase=phrase, boost=boost)
    )


# --- validation --------------------------------------------------------------------------------


def test_hotwords_are_trimmed_deduplicated_and_default_boosted() -> None:
    checked = check_hotwords(
        [hotword("  Ada   Lovelace "), hotword("Kubernetes", 3.0), hotword("Kubernetes", 1.5)]
    )
    assert checked == (Hotword("Ada Lovelace", DEFAULT_BOOST), Hotword("Kubernetes", 3.0))
    assert check_hotwords([]) == ()


@pytest.mark.parametrize(
    ("hotwords", "message"),
    [
        ([hotword("ok"), hotword("   ")], "hotwords[1]: phrase is empty"),
        ([hotword("x" * (MAX_PHRASE_CHARS + 1))], f"over the limit of {MAX_PHRASE_CHARS}"),
        ([hotword(f"w{i}") for i in range(MAX_HOTWORDS + 1)], f"over the limit of {MAX_HOTWORDS}"),
        ([hotword("zero", 0.0)], "hotwords[0]: boost must be in (0, 10]"),
        ([hotword("negative", -1.0)], "boost must be in (0, 10]"),
        ([hotword("huge", 11.0)], "boost must be in (0, 10] (got 11)"),
        ([hotword("nan", math.nan)], "boost must be in (0, 10]"),
    ],
)
def test_bad_hotwords_are_refused_with_a_reason(hotwords: list[audio_pb2.Hotword], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_hotwords(hotwords)
    assert caught.value.reason == "INVALID_FIELD"
    assert message in str(caught.value)


# --- the engine with the tiny trained model ------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> TranscriptionEngine:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=measure.MODEL, device="cpu"))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def noisy() -> list[measure.Sentence]:
    return measure.held_out(measure.MEASURE_SEED, 24, snr_db=15.0)


@pytest.mark.slow
@pytest.mark.espeak
def test_without_hotwords_output_is_bit_identical_even_beside_boosted_requests(
    engine: TranscriptionEngine, noisy: list[measure.Sentence]
) -> None:
    audio = [s.audio for s in noisy]
    plain = engine.transcribe(audio)
    boosted = tuple(Hotword(w, 4.0) for w in BOOSTED)
    other = (Hotword("coffee", 2.0),)
    sets = [boosted if i % 3 == 0 else other if i % 3 == 1 else () for i in range(len(audio))]
    mixed = engine.transcribe(audio, hotwords=sets)
    # Utterances without hotwords: the same words, times and confidences, to the bit.
    for index in range(2, len(audio), 3):
        assert mixed[index] == plain[index]
    # A strong boost does change what the boosted utterances say (else the test proves nothing).
    assert any(mixed[i].text != plain[i].text for i in range(0, len(audio), 3))
    # Nothing is left behind: the plain decoding is back and the multi-model is empty again.
    assert engine._model.decoding is engine._plain_decoding
    assert engine._booster is not None
    multi_model = engine._booster._multi_model  # NeMo keeps slots and marks removed ones free
    assert multi_model.num_models > 0 and len(multi_model.free_ids) == multi_model.num_models
    assert engine.transcribe(audio) == plain


@pytest.mark.slow
@pytest.mark.espeak
def test_concurrent_requests_with_different_hotwords_share_batches(
    engine: TranscriptionEngine, noisy: list[measure.Sentence]
) -> None:
    sentences = noisy[:12]
    sets = [tuple(Hotword(w, 3.0) for w in BOOSTED[: i % 4]) for i in range(len(sentences))]
    alone = [engine.transcribe([s.audio], hotwords=[h])[0] for s, h in zip(sentences, sets, strict=True)]
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=6, max_wait_ms=300.0))
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            together = list(
                pool.map(
                    lambda item: runner.transcribe(item[0].audio, JobContext(60.0), item[1]),
                    zip(sentences, sets, strict=True),
                )
            )
        assert max(runner.batcher.batch_sizes) > 1
    finally:
        runner.close()
    assert [t.text for t in together] == [a.text for a in alone]


@pytest.fixture
def servicer(engine: TranscriptionEngine) -> Iterator[TranscriptionServicer]:
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=4, max_wait_ms=5.0))
    yield TranscriptionServicer(runner)
    runner.close()


@pytest.mark.slow
@pytest.mark.espeak
def test_transcribe_request_refuses_bad_hotwords_before_reading_audio(
    servicer: TranscriptionServicer,
) -> None:
    request = transcription_pb2.TranscribeRequest(
        audio=audio_pb2.Audio(content=b"not audio at all"), hotwords=[hotword("fine"), hotword("")]
    )
    with pytest.raises(InvalidRequest) as caught:
        servicer.Transcribe(request, JobContext(30.0))
    assert caught.value.reason == "INVALID_FIELD"
    assert "hotwords[1]: phrase is empty" in str(caught.value)


@pytest.mark.slow
@pytest.mark.espeak
def test_transcribe_request_boosts_its_hotwords(
    servicer: TranscriptionServicer, noisy: list[measure.Sentence]
) -> None:
    def text(sentence: measure.Sentence, hotwords: list[audio_pb2.Hotword]) -> str:
        request = transcription_pb2.TranscribeRequest(
            audio=audio_pb2.Audio(content=wav_bytes(sentence.audio)), hotwords=hotwords
        )
        return servicer.Transcribe(request, JobContext(60.0)).text

    boosted = [hotword(w, 4.0) for w in BOOSTED]
    changed = [s for s in noisy if text(s, []) != text(s, boosted)]
    assert changed, "a strong boost of six words changed none of 24 noisy sentences"


@pytest.mark.slow
@pytest.mark.espeak
def test_boosting_confused_words_raises_their_recall_and_leaves_other_sentences_alone(
    engine: TranscriptionEngine,
) -> None:
    """The floors of docs/accuracy.md "Hotwords": eval/hotwords.py's measure split (300 held-out noisy
    sentences), with the words its pick split chose."""
    pick_texts = synth.sentences(measure.PICK_SEED, 300, exclude=set(training_texts()))
    held = measure.held_out(measure.MEASURE_SEED, 300, snr_db=15.0, exclude=pick_texts)
    references = [s.text for s in held]
    audio = [s.audio for s in held]
    before = [r.text for r in engine.transcribe(audio)]
    hotwords = tuple(Hotword(w, FLOOR_BOOST) for w in BOOSTED)
    after = [r.text for r in engine.transcribe(audio, hotwords=[hotwords] * len(audio))]
    recall_before = measure.recall(references, before, BOOSTED)
    recall_after = measure.recall(references, after, BOOSTED)
    assert recall_after > recall_before, (recall_before, recall_after)
    without = [i for i, t in enumerate(references) if not set(BOOSTED) & set(t.split())]
    from eval.metrics import word_error_rate

    wer_before = word_error_rate([references[i] for i in without], [before[i] for i in without])
    wer_after = word_error_rate([references[i] for i in without], [after[i] for i in without])
    assert wer_after - wer_before <= 0.005, (wer_before, wer_after)


def test_client_builders_carry_hotwords_in_every_form() -> None:
    from parakeet.client import orchestrate_request, parse_hotword, streaming_config, transcribe_request

    forms = ["Kubernetes:3", ("Ada Lovelace", 1.5), audio_pb2.Hotword(phrase="ratio 16:9"), "plain"]
    expected = [("Kubernetes", 3.0), ("Ada Lovelace", 1.5), ("ratio 16:9", None), ("plain", None)]
    for message in (
        orchestrate_request(b"RIFF", hotwords=forms),
        transcribe_request(b"RIFF", hotwords=forms),
        streaming_config(hotwords=forms),
    ):
        got = [(h.phrase, h.boost if h.HasField("boost") else None) for h in message.hotwords]
        assert got == expected
    assert parse_hotword("time 10:30 am").phrase == "time 10:30 am"
    assert not parse_hotword("time 10:30 am").HasField("boost")
    assert list(transcribe_request(b"RIFF").hotwords) == []
