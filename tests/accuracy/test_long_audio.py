"""Long recordings go through overlapping windows; with a trained model, no word may be lost or doubled.

The random-weight fixture can only show that an hour's timestamps are ordered and gap-free; the
trained model shows the words themselves survive the seams. Six and a half minutes of held-out
sentences, laid out so that every window edge and every overlap's middle falls inside speech,
are transcribed in windows and scored sentence by sentence against the same sentences
transcribed one by one: a word lost or doubled at a seam would show as a deletion or insertion
in a sentence that reaches into an overlap. A subprocess transcribes an hour of held-out speech
and holds the whole process's peak RSS under 4 GB.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import jiwer
import numpy as np
import numpy.typing as npt
import pytest

from eval import synth
from eval.metrics import WordErrors, normalise_text
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.windows import plan_windows
from tests.accuracy.test_trained_tdt import MODEL, RECIPE, TEST_SEED, WER_FLOOR, training_texts
from tests.support.servers import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

SAMPLE_RATE = 16_000
FRAME = 1280  # samples per encoder frame: 10 ms hop x 8 subsampling
DURATION_S = 6.5 * 60


@pytest.fixture(scope="module")
def utterances() -> list[synth.Utterance]:
    return synth.sentence_corpus(TEST_SEED + RECIPE.seed + 7, 180, exclude=training_texts())


@pytest.fixture(scope="module")
def engine() -> Iterator[TranscriptionEngine]:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(MODEL), device="cpu"))
    engine.load()
    yield engine


def _holds_its_points(points: list[float], cursor: float, start: float, length: float) -> bool:
    """Every seam point from the pause before a sentence to just past its end is inside its speech."""
    near = [p for p in points if cursor <= p <= start + length + 0.25]
    return all(start + 0.1 < p < start + length - 0.1 for p in near)


@dataclass
class Layout:
    recording: npt.NDArray[np.float32]
    sentences: list[synth.Utterance]
    spans: list[tuple[float, float]]  # each sentence's speech, seconds
    overlaps: list[tuple[float, float]]  # each seam's overlap, seconds
    points: list[float]  # window edges and overlap middles


def seams_in_speech(utterances: list[synth.Utterance], window_s: float, overlap_s: float) -> Layout:
    """DURATION_S of sentences placed so that every window edge and overlap middle is inside speech."""
    total = int(DURATION_S * SAMPLE_RATE) // FRAME * FRAME
    windows = plan_windows(
        total // FRAME, round(window_s * SAMPLE_RATE / FRAME), round(overlap_s * SAMPLE_RATE / FRAME)
    )
    seconds = FRAME / SAMPLE_RATE
    overlaps = [(right.start * seconds, left.end * seconds) for left, right in itertools.pairwise(windows)]
    points = sorted({point for start, end in overlaps for point in (start, (start + end) / 2, end)})
    rng = np.random.default_rng(0)
    recording = np.zeros(total, dtype=np.float32)
    spans: list[tuple[float, float]] = []
    used: list[synth.Utterance] = []
    cursor = 0.3
    for utterance in utterances:
        length = utterance.duration
        candidates = [cursor + rng.uniform(0.2, 0.6)] + [cursor + 0.05 + 0.01 * i for i in range(400)]
        start = next((c for c in candidates if _holds_its_points(points, cursor, c, length)), None)
        if start is None:  # it cannot hold the next seam points without ending beside one: skip it
            continue
        if start + length > DURATION_S - 0.5:
            break
        first = round(start * SAMPLE_RATE)
        recording[first : first + len(utterance.audio)] = utterance.audio
        spans.append((first / SAMPLE_RATE, first / SAMPLE_RATE + length))
        used.append(utterance)
        cursor = spans[-1][1]
    assert all(any(s + 0.1 < p < e - 0.1 for s, e in spans) for p in points), "a seam point is in a pause"
    return Layout(recording, used, spans, overlaps, points)


def errors_per_sentence(sentences: list[str], hypothesis: str) -> list[WordErrors]:
    """The hypothesis aligned to all sentences at once; each edit charged to the sentence it falls in
    (an insertion between two sentences to both)."""
    owner = [index for index, sentence in enumerate(sentences) for _ in normalise_text(sentence).split()]
    errors = [WordErrors() for _ in sentences]
    output = jiwer.process_words(normalise_text(" ".join(sentences)), normalise_text(hypothesis))
    for chunk in output.alignments[0]:
        if chunk.type == "insert":
            neighbours = {
                owner[i] for i in (chunk.ref_start_idx - 1, chunk.ref_start_idx) if 0 <= i < len(owner)
            }
            for index in neighbours:
                errors[index].insertions += chunk.hyp_end_idx - chunk.hyp_start_idx
            continue
        for position in range(chunk.ref_start_idx, chunk.ref_end_idx):
            record = errors[owner[position]]
            if chunk.type == "equal":
                record.hits += 1
            elif chunk.type == "substitute":
                record.substitutions += 1
            else:
                record.deletions += 1
    return errors


def total(errors: list[WordErrors]) -> WordErrors:
    return WordErrors(
        hits=sum(e.hits for e in errors),
        substitutions=sum(e.substitutions for e in errors),
        deletions=sum(e.deletions for e in errors),
        insertions=sum(e.insertions for e in errors),
    )


@pytest.mark.parametrize(("window_s", "overlap_s"), [(20.0, 4.0), (120.0, 16.0)], ids=["small", "default"])
def test_windowed_transcript_loses_and_doubles_no_word_at_seams_inside_speech(
    engine: TranscriptionEngine, utterances: list[synth.Utterance], window_s: float, overlap_s: float
) -> None:
    layout = seams_in_speech(utterances, window_s, overlap_s)
    assert len(layout.overlaps) >= (3 if window_s == 120.0 else 20)

    windowed = TranscriptionEngine(
        TranscriptionEngineConfig(
            model=str(MODEL), device="cpu", window_s=window_s, window_overlap_s=overlap_s
        )
    )
    windowed._model, windowed._device = engine._model, engine._device  # one loaded model for both
    (transcript,) = windowed.transcribe([layout.recording])
    one_by_one = engine.transcribe([u.audio for u in layout.sentences])

    texts = [u.text for u in layout.sentences]
    whole = errors_per_sentence(texts, transcript.text)
    alone = [
        errors_per_sentence([text], result.text)[0] for text, result in zip(texts, one_by_one, strict=True)
    ]
    # Sentences reaching into the middle half of an overlap, where the cut falls: where a word
    # lost or doubled at a hand-over would show. (Errors elsewhere are the windows' own.)
    cut_zones = [(a + (b - a) / 4, b - (b - a) / 4) for a, b in layout.overlaps]
    at_seams = [
        index
        for index, (start, end) in enumerate(layout.spans)
        if any(start < right and end > left for left, right in cut_zones)
    ]
    seam_whole, seam_alone = total([whole[i] for i in at_seams]), total([alone[i] for i in at_seams])
    report = f"at seams: windowed {seam_whole}, one by one {seam_alone}; everywhere: {total(whole)}, {total(alone)}"
    assert seam_whole.deletions + seam_whole.insertions <= seam_alone.deletions + seam_alone.insertions + 1, (
        report
    )
    assert seam_whole.wer <= seam_alone.wer + 0.01, report
    assert total(whole).wer <= WER_FLOOR, report
    assert total(whole).wer <= total(alone).wer + 0.01, report

    starts = [word.start for word in transcript.words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert max(later - earlier for earlier, later in itertools.pairwise(starts)) < 3.0
    assert transcript.words[-1].end <= len(layout.recording) / SAMPLE_RATE + 0.2
    assert transcript.text == " ".join(word.word for word in transcript.words)
    (segment,) = transcript.segments  # the model writes no sentence ends: one segment, as NeMo makes it
    assert (segment.start, segment.end) == (transcript.words[0].start, transcript.words[-1].end)
    assert segment.text == transcript.text


HOUR_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from eval import synth
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from tests.accuracy.test_trained_tdt import MODEL, RECIPE, TEST_SEED, training_texts

def kb(field):
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field)).split()[1])

utterances = synth.sentence_corpus(TEST_SEED + RECIPE.seed + 7, 40, exclude=training_texts())
block = np.concatenate([np.concatenate([u.audio, np.zeros(8000, np.float32)]) for u in utterances])
repeats = -(-int(float(sys.argv[1]) * 16000) // len(block))
engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(MODEL), device="cpu"))
engine.load()
(transcript,) = engine.transcribe([np.tile(block, repeats)])
print(json.dumps({
    "reference": " ".join(u.text for u in utterances) + " ",
    "repeats": repeats,
    "text": transcript.text,
    "starts": [w.start for w in transcript.words],
    "peak_rss_mb": kb("VmHWM:") / 1024,
}))
"""


@pytest.mark.timeout(1200)
def test_an_hour_of_speech_keeps_its_words_under_4_gb() -> None:
    """The whole process (model, the hour's samples, every window) peaks under 4 GB: VmHWM."""
    result = subprocess.run(
        [sys.executable, "-c", HOUR_SCRIPT, "3600"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1100,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # same memory; no thread contention on shared runners
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["peak_rss_mb"] < 4 * 1024, report["peak_rss_mb"]
    errors = WordErrors()
    errors.add(report["reference"] * report["repeats"], report["text"])
    assert errors.wer <= WER_FLOOR, errors
    starts = report["starts"]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert max(later - earlier for earlier, later in itertools.pairwise(starts)) < 3.0
