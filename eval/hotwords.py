"""Hotword boosting, measured with the tiny trained TDT on held-out espeak sentences.

Why two splits: the words to boost are picked where the model misses them on one held-out split
(the words a user would notice it getting wrong), and the gain is measured on another, so the figure
is not the selection's own luck. Speech gets white noise at a fixed SNR (seeded) so that the model,
near-perfect on clean espeak, misses enough words for recall to be measured.

    .venv/bin/python -m eval.hotwords --pick 300 --measure 300 --snr-db 15 --top 6 --boost 0.5 1 2

prints the picked words, their recall on the measure split without and with boosting, and the WER of
the measure split's sentences that contain none of them (boosted vs not; it must move <= 0.5 points).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from eval import synth
from eval.metrics import normalise_text, word_error_rate
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.hotwords import DEFAULT_BOOST, Hotword, HotwordSet
from tests.fixtures.train_tdt import RECIPE, TEST_SEED, TRAIN_SEED

MODEL = "eval/assets/tiny_tdt_espeak.nemo"
PICK_SEED = TEST_SEED + RECIPE.seed + 100
MEASURE_SEED = TEST_SEED + RECIPE.seed + 200


@dataclass(frozen=True)
class Sentence:
    text: str
    audio: synth.Audio


def held_out(seed: int, count: int, snr_db: float, exclude: Sequence[str] = ()) -> list[Sentence]:
    """`count` held-out sentences (none in training nor in `exclude`), with seeded white noise at `snr_db`."""
    training = set(synth.sentences(TRAIN_SEED + RECIPE.seed, RECIPE.train_sentences))
    corpus = synth.sentence_corpus(seed, count, exclude=training | set(exclude))
    rng = np.random.default_rng(seed)
    noisy = []
    for utterance in corpus:
        power = float(np.mean(utterance.audio.astype(np.float64) ** 2))
        noise = rng.standard_normal(len(utterance.audio)) * np.sqrt(power / 10 ** (snr_db / 10))
        noisy.append(Sentence(utterance.text, (utterance.audio + noise).astype(np.float32)))
    return noisy


def misses(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[Counter[str], Counter[str]]:
    """Per reference word: how often it was said, and how often the hypothesis lacks it (bag of words)."""
    said: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        heard = Counter(normalise_text(hypothesis).split())
        for word in normalise_text(reference).split():
            said[word] += 1
            if heard[word] > 0:
                heard[word] -= 1
            else:
                missed[word] += 1
    return said, missed


def recall(references: Sequence[str], hypotheses: Sequence[str], words: Sequence[str]) -> float:
    said, missed = misses(references, hypotheses)
    total = sum(said[w] for w in words)
    return 1.0 - sum(missed[w] for w in words) / total if total else float("nan")


def pick_confused(
    references: Sequence[str], hypotheses: Sequence[str], top: int, min_said: int = 5, min_chars: int = 4
) -> list[str]:
    """The `top` words with the lowest recall (said at least `min_said` times, missed at least once).

    Short function words ("the", "dog") are left out: hotwords are names and terms, not glue words.
    """
    said, missed = misses(references, hypotheses)
    ranked = sorted(
        (w for w in missed if said[w] >= min_said and len(w) >= min_chars),
        key=lambda w: (-missed[w] / said[w], -missed[w], w),
    )
    return ranked[:top]


@dataclass(frozen=True)
class HotwordReport:
    words: list[str]
    boost: float
    recall_before: float
    recall_after: float
    sentences_with: int
    wer_without_words_before: float
    wer_without_words_after: float
    sentences_without: int

    @property
    def wer_change_points(self) -> float:
        return 100.0 * (self.wer_without_words_after - self.wer_without_words_before)


def measure(
    engine: TranscriptionEngine,
    pick: Sequence[Sentence],
    held: Sequence[Sentence],
    top: int,
    boost: float = DEFAULT_BOOST,
) -> HotwordReport:
    """Pick confused words on `pick`, then score `held` decoded without and with them boosted."""
    picked = [r.text for r in engine.transcribe([s.audio for s in pick])]
    words = pick_confused([s.text for s in pick], picked, top)
    hotwords: HotwordSet = tuple(Hotword(w, boost) for w in sorted(words))
    audio = [s.audio for s in held]
    before = [r.text for r in engine.transcribe(audio)]
    after = [r.text for r in engine.transcribe(audio, hotwords=[hotwords] * len(audio))]
    references = [s.text for s in held]
    chosen = set(words)
    without = [i for i, text in enumerate(references) if not chosen & set(text.split())]
    return HotwordReport(
        words=words,
        boost=boost,
        recall_before=recall(references, before, words),
        recall_after=recall(references, after, words),
        sentences_with=len(references) - len(without),
        wer_without_words_before=word_error_rate(
            [references[i] for i in without], [before[i] for i in without]
        ),
        wer_without_words_after=word_error_rate(
            [references[i] for i in without], [after[i] for i in without]
        ),
        sentences_without=len(without),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--pick", type=int, default=300, help="held-out sentences to pick confused words on")
    parser.add_argument("--measure", type=int, default=300, help="other held-out sentences to measure on")
    parser.add_argument("--snr-db", type=float, default=15.0)
    parser.add_argument("--top", type=int, default=6, help="how many confused words to boost")
    parser.add_argument("--boost", type=float, nargs="+", default=[DEFAULT_BOOST])
    args = parser.parse_args(argv)
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=args.model, device="cpu"))
    engine.load()
    pick = held_out(PICK_SEED, args.pick, args.snr_db)
    held = held_out(MEASURE_SEED, args.measure, args.snr_db, exclude=[s.text for s in pick])
    for boost in args.boost:
        report = measure(engine, pick, held, args.top, boost)
        print(json.dumps(asdict(report) | {"wer_change_points": round(report.wer_change_points, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
