"""Hotword boosting, measured with the tiny trained TDT on held-out espeak sentences.

Why two splits: the words to boost are picked where the model misses them on one held-out split
(the words a user would notice it getting wrong), and the gain is measured on another, so the figure
is not the selection's own luck. Speech gets white noise at a fixed SNR (seeded) so that the model,
near-perfect on clean espeak, misses enough words for recall to be measured.

    .venv/bin/python -m eval.hotwords --pick 300 --measure 300 --snr-db 15 --top 6 --boost 0.5 1 2

prints the picked words, their recall on the measure split without and with boosting, and the WER of
the measure split's sentences that contain none of them (boosted vs not; it must move <= 0.5 points).
With --live the same words are measured in live streams (NeMo's buffered streaming pipeline, the
server's StreamingConfig): the measure split's sentences, half a second apart, are cut among
--streams concurrent streams that share every pass, decoded without and with the hotwords, and
each final word is given back to the sentence its time falls in.
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
from parakeet.hotwords import DEFAULT_BOOST
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.hotwords import NO_HOTWORDS, Hotword, HotwordSet
from parakeet_server.transcription.streaming import Final, StreamEvent, StreamingTranscriber
from parakeet_server.transcription.streaming_config import StreamingConfig
from tests.fixtures.train_tdt import RECIPE, TEST_SEED, TRAIN_SEED

MODEL = "eval/assets/tiny_tdt_espeak.nemo"
PICK_SEED = TEST_SEED + RECIPE.seed + 100
MEASURE_SEED = TEST_SEED + RECIPE.seed + 200
RATE = 16_000
GAP_S = 0.5  # silence between a live stream's sentences: over the 400 ms endpoint, one final each


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
    words = confused_words(engine, pick, top)
    hotwords: HotwordSet = tuple(Hotword(w, boost) for w in sorted(words))
    audio = [s.audio for s in held]
    before = [r.text for r in engine.transcribe(audio)]
    after = [r.text for r in engine.transcribe(audio, hotwords=[hotwords] * len(audio))]
    return report([s.text for s in held], before, after, words, boost)


def confused_words(engine: TranscriptionEngine, pick: Sequence[Sentence], top: int) -> list[str]:
    """The words to boost: the ones the batch engine misses most on the pick split."""
    picked = [r.text for r in engine.transcribe([s.audio for s in pick])]
    return pick_confused([s.text for s in pick], picked, top)


def measure_live(
    transcriber: StreamingTranscriber,
    words: Sequence[str],
    held: Sequence[Sentence],
    boosts: Sequence[float] = (DEFAULT_BOOST,),
    streams: int = 16,
) -> list[HotwordReport]:
    """`words` boosted (by each of `boosts`) in live streams over `held`, scored as `measure` scores
    the batch engine."""
    references = [s.text for s in held]
    before = stream_sentences(transcriber, held, NO_HOTWORDS, streams)
    reports = []
    for boost in boosts:
        hotwords: HotwordSet = tuple(Hotword(w, boost) for w in sorted(words))
        after = stream_sentences(transcriber, held, hotwords, streams)
        reports.append(report(references, before, after, list(words), boost))
    return reports


def stream_sentences(
    transcriber: StreamingTranscriber, sentences: Sequence[Sentence], hotwords: HotwordSet, streams: int
) -> list[str]:
    """Each sentence's text as live streams decode it: the sentences laid end to end (GAP_S apart) on
    `streams` concurrent streams stepped together, each final word given to the sentence its middle
    falls in."""
    gap = np.zeros(round(GAP_S * RATE), np.float32)
    lanes = [list(range(lane, len(sentences), streams)) for lane in range(min(streams, len(sentences)))]
    spans: dict[int, list[tuple[float, int]]] = {}  # stream -> (start s, sentence index), in order
    ids: list[int] = []
    for lane in lanes:
        stream = transcriber.open_stream(hotwords=hotwords)
        ids.append(stream)
        at = 0
        for index in lane:
            spans.setdefault(stream, []).append((at / RATE, index))
            transcriber.feed(stream, np.concatenate([sentences[index].audio, gap]))
            at += len(sentences[index].audio) + len(gap)
    events: list[StreamEvent] = []
    while transcriber.ready_streams():
        events += transcriber.step().events
    for stream in ids:
        events += transcriber.close(stream)
    heard: list[list[str]] = [[] for _ in sentences]
    for event in events:
        if isinstance(event, Final):
            for word in event.words:
                middle = (word.start + word.end) / 2
                index = max(
                    (s for s in spans[event.stream] if s[0] <= middle), default=spans[event.stream][0]
                )[1]
                heard[index].append(word.word)
    return [" ".join(words) for words in heard]


def report(
    references: Sequence[str], before: Sequence[str], after: Sequence[str], words: list[str], boost: float
) -> HotwordReport:
    """Recall of `words` before and after, and the WER of the sentences without any of them."""
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
    parser.add_argument("--live", action="store_true", help="measure live streams instead of Transcribe")
    parser.add_argument("--streams", type=int, default=16, help="--live: concurrent streams")
    args = parser.parse_args(argv)
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=args.model, device="cpu"))
    engine.load()
    pick = held_out(PICK_SEED, args.pick, args.snr_db)
    held = held_out(MEASURE_SEED, args.measure, args.snr_db, exclude=[s.text for s in pick])
    if args.live:
        words = confused_words(engine, pick, args.top)
        transcriber = StreamingTranscriber(args.model, StreamingConfig(), device="cpu")
        reports = measure_live(transcriber, words, held, args.boost, args.streams)
    else:
        reports = [measure(engine, pick, held, args.top, boost) for boost in args.boost]
    for result in reports:
        print(json.dumps(asdict(result) | {"wer_change_points": round(result.wer_change_points, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
