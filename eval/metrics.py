"""WER, DER/JER and WDER, computed the way published numbers are, so results compare.

WER comes from jiwer over normalised words (parakeet writes punctuation and capitals; references
often do not). DER and JER come from pyannote.metrics with no collar and overlap scored, the
strictest setting. WDER (Shafey et al., 2019) is the share of aligned words — correct or
substituted — whose speaker is wrong after the best one-to-one mapping of hypothesis speakers to
reference speakers; it scores the product's output (speaker-attributed words), which DER and WER
each see only half of.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jiwer
import numpy as np
from scipy.optimize import linear_sum_assignment

_NOT_IN_WORDS = re.compile(r"[^a-z0-9' ]+")


class SpeakerWord(NamedTuple):
    word: str
    speaker: str


class SpeakerTurn(NamedTuple):
    start: float
    end: float
    speaker: str


def normalise_word(word: str) -> str:
    """Lower case without punctuation; hyphens split words ("twenty-one" is two words)."""
    spaced = word.lower().replace("-", " ")
    return " ".join(_NOT_IN_WORDS.sub("", spaced).split())


def normalise_text(text: str) -> str:
    return " ".join(part for part in (normalise_word(word) for word in text.split()) if part)


def _split_words(words: Iterable[SpeakerWord]) -> list[SpeakerWord]:
    """Normalised words, one label each; words that normalise to nothing are dropped."""
    return [SpeakerWord(part, item.speaker) for item in words for part in normalise_word(item.word).split()]


@dataclass
class WordErrors:
    """Edit counts over any number of utterances; `wer` is errors over reference words."""

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def reference_words(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def wer(self) -> float:
        errors = self.substitutions + self.deletions + self.insertions
        return errors / self.reference_words if self.reference_words else float(errors > 0)

    def add(self, reference: str, hypothesis: str) -> None:
        ref, hyp = normalise_text(reference), normalise_text(hypothesis)
        if not ref:
            self.insertions += len(hyp.split())
            return
        if not hyp:
            self.deletions += len(ref.split())
            return
        output = jiwer.process_words(ref, hyp)
        self.hits += output.hits
        self.substitutions += output.substitutions
        self.deletions += output.deletions
        self.insertions += output.insertions


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    errors = WordErrors()
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        errors.add(reference, hypothesis)
    return errors.wer


@dataclass
class SpeakerWordErrors:
    """WDER over one recording: aligned word pairs and how many carry the wrong speaker."""

    aligned: int = 0
    wrong_speaker: int = 0

    @property
    def wder(self) -> float:
        return self.wrong_speaker / self.aligned if self.aligned else 0.0


def speaker_word_errors(
    reference: Sequence[SpeakerWord], hypothesis: Sequence[SpeakerWord]
) -> SpeakerWordErrors:
    """Align the words (jiwer), map speakers one-to-one (Hungarian), count mismatched labels.

    Labels are arbitrary on both sides (SPEAKER_00 vs "alice"), so the mapping that agrees on the
    most aligned words is used; a hypothesis speaker with no reference partner is always wrong.
    """
    ref, hyp = _split_words(reference), _split_words(hypothesis)
    if not ref or not hyp:
        return SpeakerWordErrors()
    output = jiwer.process_words(" ".join(w.word for w in ref), " ".join(w.word for w in hyp))
    pairs = [
        (ref[chunk.ref_start_idx + offset].speaker, hyp[chunk.hyp_start_idx + offset].speaker)
        for chunk in output.alignments[0]
        if chunk.type in ("equal", "substitute")
        for offset in range(chunk.ref_end_idx - chunk.ref_start_idx)
    ]
    if not pairs:
        return SpeakerWordErrors()
    ref_speakers = sorted({r for r, _ in pairs})
    hyp_speakers = sorted({h for _, h in pairs})
    agreement = np.zeros((len(hyp_speakers), len(ref_speakers)), dtype=np.int64)
    for r, h in pairs:
        agreement[hyp_speakers.index(h), ref_speakers.index(r)] += 1
    rows, cols = linear_sum_assignment(agreement, maximize=True)
    matched = int(agreement[rows, cols].sum())
    return SpeakerWordErrors(aligned=len(pairs), wrong_speaker=len(pairs) - matched)


def annotation(turns: Iterable[SpeakerTurn], uri: str = "recording") -> Any:
    """A pyannote Annotation, the type pyannote.metrics scores."""
    from pyannote.core import Annotation, Segment

    result = Annotation(uri=uri)
    for index, turn in enumerate(turns):
        if turn.end > turn.start:
            result[Segment(turn.start, turn.end), index] = turn.speaker
    return result


def parse_rttm(text: str) -> dict[str, list[SpeakerTurn]]:
    """RTTM SPEAKER lines by recording id (other line types are ignored, as md-eval does)."""
    turns: dict[str, list[SpeakerTurn]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"RTTM line {number} has {len(fields)} fields; SPEAKER lines have 10")
        start, duration = float(fields[3]), float(fields[4])
        turns.setdefault(fields[1], []).append(SpeakerTurn(start, start + duration, fields[7]))
    return turns


@dataclass
class DiarizationErrors:
    """DER and JER accumulated over recordings (pyannote.metrics, collar 0, overlap scored)."""

    collar: float = 0.0
    _der: Any = field(init=False, repr=False)
    _jer: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

        self._der = DiarizationErrorRate(collar=self.collar, skip_overlap=False)
        self._jer = JaccardErrorRate(collar=self.collar, skip_overlap=False)  # type: ignore[no-untyped-call]

    def add(self, reference: Sequence[SpeakerTurn], hypothesis: Sequence[SpeakerTurn], uri: str) -> float:
        """Score one recording; returns its DER."""
        ref, hyp = annotation(reference, uri), annotation(hypothesis, uri)
        with warnings.catch_warnings():  # "uem approximated by the extents": what is meant here
            warnings.simplefilter("ignore", UserWarning)
            self._jer(ref, hyp)
            return float(self._der(ref, hyp))

    @property
    def der(self) -> float:
        return float(abs(self._der))

    @property
    def jer(self) -> float:
        return float(abs(self._jer))
