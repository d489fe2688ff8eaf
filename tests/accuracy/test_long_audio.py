"""Long recordings take the local-attention path; with a trained model, no word may be lost or doubled.

The random-weight fixture could only show the hour's timestamps are ordered and gap-free; the
trained model shows the words themselves survive: a minute and a half of held-out sentences,
transcribed in one pass with local attention (the path recordings past
`local_attention_after_s` take), must match the script within the WER floor and lose or double
no more words than full attention over the same recording does (0.92 % for both, and for the
sentences one by one, with the committed model).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.eval import synth
from services.eval.metrics import WordErrors
from services.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from tests.accuracy.test_trained_tdt import MODEL, RECIPE, TEST_SEED, WER_FLOOR, training_texts

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

SAMPLE_RATE = 16_000


def test_local_attention_over_a_long_recording_keeps_every_word() -> None:
    utterances = synth.sentence_corpus(TEST_SEED + RECIPE.seed + 7, 40, exclude=training_texts())
    rng = np.random.default_rng(0)
    pieces = []
    for utterance in utterances:
        pieces += [utterance.audio, np.zeros(int(rng.uniform(0.3, 0.9) * SAMPLE_RATE), dtype=np.float32)]
    recording = np.concatenate(pieces)
    duration = len(recording) / SAMPLE_RATE
    assert duration > 60.0

    reference = " ".join(utterance.text for utterance in utterances)
    scores: dict[str, WordErrors] = {}
    for name, after_s in (("local", 30.0), ("full", 3600.0)):
        engine = TranscriptionEngine(
            TranscriptionEngineConfig(model=str(MODEL), device="cpu", local_attention_after_s=after_s)
        )
        engine.load()
        (transcript,) = engine.transcribe([recording])
        scores[name] = WordErrors()
        scores[name].add(reference, " ".join(word.word for word in transcript.words))
        if name == "local":
            local = transcript

    assert scores["local"].wer <= WER_FLOOR, f"WER {scores['local'].wer:.1%}"
    # A lost or doubled stretch at a window edge would show as extra deletions or insertions.
    assert scores["local"].deletions <= scores["full"].deletions + 2
    assert scores["local"].insertions <= scores["full"].insertions + 2
    starts = [word.start for word in local.words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert max(later - earlier for earlier, later in itertools.pairwise(starts)) < 3.0
    assert local.words[-1].end <= duration + 0.2
