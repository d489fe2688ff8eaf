"""`make eval`: WER, DER/JER and WDER of a configured stack over a manifest, in one command.

The stack is either embedded (the orchestrator servicer over in-process engines, exactly what the
single-endpoint worker runs; `--model` and `--pipeline` take the same values as the servers) or
a running OrchestratorService (`--server`), so the numbers describe the product, not a side path.
With no manifest it synthesizes a held-out set and scores the offline fixture stack (the trained
tiny TDT + the offline diarization backend) against the floors; with real weights, point it at
a LibriSpeech, AMI or VoxConverse manifest (`python -m eval.datasets`) to reproduce
published numbers.

Manifest: NeMo-style JSON lines. `audio_filepath` is required; `text` (reference transcript)
enables WER, `rttm_filepath` enables DER/JER, `words_filepath` (JSON `{"words": [{"word",
"speaker"}]}`) enables WDER; `uri` names the recording in the RTTM (default: the file's stem).
Relative paths are read from the manifest's folder. Optional `condition` (what happened to the
audio: room, noise, codec) and the reference speaker count split the report into rows by
condition and by speaker count.

With no manifest, two corpora are synthesized and reported side by side: `clean` (eval/synth.py:
held-out sentences and 2-4 speaker conversations, held to the issue's floors) and `realistic`
(eval/realistic.py's held-out test split: 1-6 speakers, rooms, noise, babble, telephone, codecs,
overlaps; held to eval/floors.py's REALISTIC). `--quick` scores small sets of both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from eval import report
from eval.floors import CLEAN, REALISTIC, Floors, Summary
from eval.metrics import (
    DiarizationErrors,
    SpeakerTurn,
    SpeakerWord,
    SpeakerWordErrors,
    WordErrors,
    parse_rttm,
    speaker_word_errors,
)
from parakeet.client import orchestrate_request
from parakeet.v1 import orchestrator_pb2

FIXTURE_MODEL = Path(__file__).parent / "assets" / "tiny_tdt_espeak.nemo"
OFFLINE_PIPELINE = "offline"

ALL_CONVERSATIONS = "2-4 speaker conversations"
REALISTIC_SET = "realistic test conversations"

__all__ = ["CLEAN", "REALISTIC", "Floors", "Item", "Report", "evaluate", "main", "read_manifest"]

Orchestrate = Callable[[orchestrator_pb2.OrchestrateRequest], orchestrator_pb2.OrchestrateResponse]


@dataclass(frozen=True)
class Item:
    """One recording and whatever references it has."""

    audio: Path
    uri: str
    text: str | None = None
    turns: list[SpeakerTurn] | None = None
    words: list[SpeakerWord] | None = None
    condition: str | None = None

    @property
    def num_speakers(self) -> int | None:
        if self.turns:
            return len({turn.speaker for turn in self.turns})
        if self.words:
            return len({word.speaker for word in self.words})
        return None


def read_manifest(path: Path, condition: str | None = None) -> list[Item]:
    """The manifest's items; `condition` labels those whose entry names none."""
    base = path.parent
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        if "audio_filepath" not in entry:
            raise ValueError(f"{path}:{number}: every entry needs audio_filepath")
        audio = base / entry["audio_filepath"]
        uri = entry.get("uri") or audio.stem
        turns = None
        if entry.get("rttm_filepath"):
            by_uri = parse_rttm((base / entry["rttm_filepath"]).read_text())
            turns = by_uri.get(uri, [] if len(by_uri) != 1 else next(iter(by_uri.values())))
        words = None
        if entry.get("words_filepath"):
            document = json.loads((base / entry["words_filepath"]).read_text())
            words = [SpeakerWord(w["word"], w["speaker"]) for w in document["words"]]
        items.append(
            Item(
                audio=audio,
                uri=uri,
                text=entry.get("text"),
                turns=turns,
                words=words,
                condition=entry.get("condition") or condition,
            )
        )
    return items


def embedded(model: str, pipeline: str, diarize: bool) -> Orchestrate:
    """The orchestrator servicer over in-process engines, warmed up before the clock starts."""
    from parakeet_server.core.context import JobContext
    from parakeet_server.orchestrator.servicer import OrchestratorServicer
    from parakeet_server.orchestrator.wiring import embedded_backends

    backends = embedded_backends(model, pipeline, diarization=diarize)
    backends.warm_up()
    servicer = OrchestratorServicer(backends, max_concurrent_calls=2)
    return lambda request: servicer.Orchestrate(request, JobContext(None))


def remote(address: str, token: str | None) -> Orchestrate:
    from parakeet.client import ParakeetClient

    client = ParakeetClient(address, token=token, max_message_bytes=256 * 1024 * 1024)  # whole recordings
    return client.orchestrate


class Scorer(Protocol):
    def add(
        self, item: Item, response: orchestrator_pb2.OrchestrateResponse, seconds: float, diarized: bool
    ) -> None: ...


@dataclass
class Report:
    """Scores accumulated over the manifest, and the compute they cost."""

    files: int = 0
    audio_s: float = 0.0
    compute_s: float = 0.0
    words: WordErrors = field(default_factory=WordErrors)
    diarization: DiarizationErrors = field(default_factory=DiarizationErrors)
    scored_turns: int = 0
    speaker_words: SpeakerWordErrors = field(default_factory=SpeakerWordErrors)
    scored_words: int = 0
    counted: int = 0  # recordings whose found speaker count was compared with the reference
    counted_exact: int = 0

    def add(
        self,
        item: Item,
        response: orchestrator_pb2.OrchestrateResponse,
        seconds: float,
        diarized: bool = True,
    ) -> None:
        """Score one response; speakers only when they were asked for (`diarized`)."""
        self.files += 1
        self.audio_s += response.duration
        self.compute_s += seconds
        if item.text is not None:
            self.words.add(item.text, response.text)
        if not diarized:
            return
        if item.turns is not None:
            hypothesis = [SpeakerTurn(t.start, t.end, t.speaker) for t in response.speaker_turns]
            self.diarization.add(item.turns, hypothesis, item.uri)
            self.scored_turns += 1
        if item.words is not None:
            hypothesis_words = [SpeakerWord(w.word, w.speaker) for w in response.words]
            scored = speaker_word_errors(item.words, hypothesis_words)
            self.speaker_words.aligned += scored.aligned
            self.speaker_words.wrong_speaker += scored.wrong_speaker
            self.scored_words += 1
        if item.num_speakers is not None:
            self.counted += 1
            self.counted_exact += found_speakers(response) == item.num_speakers

    def summary(self) -> Summary:
        return {
            "files": self.files,
            "audio_minutes": round(self.audio_s / 60, 2),
            "wer": round(self.words.wer, 4) if self.words.reference_words else None,
            "der": round(self.diarization.der, 4) if self.scored_turns else None,
            "jer": round(self.diarization.jer, 4) if self.scored_turns else None,
            "wder": round(self.speaker_words.wder, 4) if self.scored_words else None,
            "speaker_count_exact": round(self.counted_exact / self.counted, 4) if self.counted else None,
            "speaker_counts_scored": self.counted,
            "real_time_factor": round(self.compute_s / self.audio_s, 4) if self.audio_s else None,
        }


def found_speakers(response: orchestrator_pb2.OrchestrateResponse) -> int:
    """The number of speakers the stack found: its own count, else the distinct labels it gave."""
    labels = {turn.speaker for turn in response.speaker_turns} or {
        w.speaker for w in response.words if w.speaker
    }
    return response.num_speakers or len(labels)


@dataclass
class Breakdown:
    """Every scored item added per corpus, per (speaker count, corpus) and per (condition, corpus)."""

    corpora: dict[str, Report] = field(default_factory=dict)
    speakers: dict[int, dict[str, Report]] = field(default_factory=dict)
    conditions: dict[str, dict[str, Report]] = field(default_factory=dict)

    def scorer(self, corpus: str) -> Scorer:
        """What `evaluate` adds each result of `corpus` to."""
        breakdown = self

        class _Corpus:
            def add(
                self,
                item: Item,
                response: orchestrator_pb2.OrchestrateResponse,
                seconds: float,
                diarized: bool,
            ) -> None:
                breakdown.corpora.setdefault(corpus, Report()).add(item, response, seconds, diarized)
                if diarized and item.num_speakers is not None:
                    by_count = breakdown.speakers.setdefault(item.num_speakers, {})
                    by_count.setdefault(corpus, Report()).add(item, response, seconds, diarized)
                if item.condition is not None:
                    by_condition = breakdown.conditions.setdefault(item.condition, {})
                    by_condition.setdefault(corpus, Report()).add(item, response, seconds, diarized)

        return _Corpus()

    def corpus(self, name: str) -> Summary:
        """The corpus's pooled scores (an empty corpus scores nothing)."""
        return self.corpora.get(name, Report()).summary()

    def by_speakers(self) -> dict[str, dict[str, Summary]]:
        return {
            str(count): {name: r.summary() for name, r in self.speakers[count].items()}
            for count in sorted(self.speakers)
        }

    def by_condition(self) -> dict[str, dict[str, Summary]]:
        return {
            condition: {name: r.summary() for name, r in reports.items()}
            for condition, reports in self.conditions.items()
        }


def evaluate(
    items: Sequence[Item],
    orchestrate: Orchestrate,
    diarize: bool,
    oracle_speakers: bool = False,
    progress: Callable[[str], None] | None = None,
    also: Sequence[Scorer] = (),
) -> Report:
    """Score `items`; each result is also added to the scorers in `also` (a pool, a breakdown)."""
    report = Report()
    for index, item in enumerate(items, 1):
        wants_speakers = diarize and (item.turns is not None or item.words is not None)
        request = orchestrate_request(
            item.audio,
            diarize=wants_speakers,
            word_timestamps=True,
            num_speakers=item.num_speakers if wants_speakers and oracle_speakers else None,
        )
        started = time.perf_counter()
        try:
            response = orchestrate(request)
        except Exception as error:
            raise RuntimeError(f"{item.audio}: {error}") from error
        elapsed = time.perf_counter() - started
        for scorer in (report, *also):
            scorer.add(item, response, elapsed, wants_speakers)
        if progress is not None:
            progress(f"[{index}/{len(items)}] {item.uri}: {response.text[:70]!r}")
    return report


def render_table(rows: Sequence[tuple[str, Summary]]) -> str:
    columns = [
        "files",
        "audio_minutes",
        "wer",
        "der",
        "jer",
        "wder",
        "speaker_count_exact",
        "real_time_factor",
    ]
    header = ["set", *columns]
    body = [[name] + ["-" if s.get(c) is None else f"{s[c]}" for c in columns] for name, s in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *body]
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Sets:
    """What to score: manifests held to the floors one by one, and manifests held to them as one pool.

    A pooled manifest still gets its own row (it shows where the errors are), but only the pool's
    row is held to the floors, as `make eval` holds its 2-, 3- and 4-speaker conversations.
    """

    alone: dict[str, Path]
    pooled: dict[str, Path] = field(default_factory=dict)
    pool_name: str = "pool"

    def held(self) -> dict[str, str]:
        """The rows --check-floors checks, each with what it covers."""
        rows = {name: name for name in self.alone}
        if self.pooled:
            rows[self.pool_name] = f"{self.pool_name} (pooled: {', '.join(self.pooled)})"
        return rows


@dataclass(frozen=True)
class Corpus:
    """Sets reported as one column (clean, realistic) and held to one set of floors."""

    name: str
    sets: Sets
    floors: Floors = CLEAN
    condition: str | None = None  # the condition of items whose manifest names none


def synthesized_sets(out: Path, seed: int, sentences: int, conversations: int, turns: int) -> Sets:
    """Held-out sentences, and 2-, 3- and 4-speaker conversations pooled; one manifest per set."""
    from eval.synth import write_corpus

    pooled = {
        f"{speakers}-speaker conversations": write_corpus(
            out / f"conversations_{speakers}",
            seed + speakers,
            0,
            conversations,
            num_speakers=speakers,
            num_turns=turns,
        )
        for speakers in (2, 3, 4)
    }
    return Sets({"sentences": write_corpus(out / "sentences", seed, sentences, 0)}, pooled, ALL_CONVERSATIONS)


def realistic_sets(out: Path, conversations: int, max_minutes: float) -> Sets:
    """The realistic corpus's held-out test split (eval/realistic.py), files reused when already in `out`."""
    from eval.realistic import write_set

    return Sets({REALISTIC_SET: write_set(out, "test", conversations, max_minutes=max_minutes)})


def given_sets(manifests: Sequence[Path], pool: Sequence[Path]) -> Sets:
    """The manifests of the command line: positional ones alone, --pool ones as one pool."""
    return Sets(
        {str(path): path for path in manifests},
        {str(path): path for path in pool},
        f"pooled ({len(pool)} manifest{'s' if len(pool) != 1 else ''})",
    )


@dataclass
class Scores:
    """What `score` measured: a row per set, and the breakdown by corpus, speaker count and condition."""

    rows: list[tuple[str, Summary]]
    breakdown: Breakdown


def score(
    corpora: Sequence[Corpus],
    orchestrate: Orchestrate,
    diarize: bool,
    oracle_speakers: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Scores:
    """Per corpus: one row per manifest, then the pool's row when there is a pool."""
    rows = []
    breakdown = Breakdown()
    for corpus in corpora:
        pool = Report()
        column = breakdown.scorer(corpus.name)
        sets = corpus.sets
        for group, pooled in ((sets.alone, ()), (sets.pooled, (pool,))):
            for name, manifest in group.items():
                items = read_manifest(manifest, corpus.condition)
                report = evaluate(items, orchestrate, diarize, oracle_speakers, progress, (*pooled, column))
                rows.append((name, report.summary()))
        if sets.pooled:
            rows.append((sets.pool_name, pool.summary()))
    return Scores(rows, breakdown)


def check_floors(corpora: Sequence[Corpus], rows: Sequence[tuple[str, Summary]]) -> list[str]:
    """Says which floors hold for which rows, then checks them; returns the misses."""
    summaries = dict(rows)
    failures = []
    for corpus in corpora:
        held = corpus.sets.held()
        label = f"{corpus.name} floors" if len(corpora) > 1 else "floors"
        print(f"{label}: {corpus.floors.describe()} (a score without references is not checked), held by:")
        for line in held.values():
            print(f"  {line}")
        failures += [
            f"{name}: {problem}" for name in held for problem in corpus.floors.failures(summaries[name])
        ]
    for failure in failures:
        print(f"FLOOR MISSED  {failure}", file=sys.stderr)
    print("floors missed" if failures else "floors met")
    return failures


def print_report(corpora: Sequence[Corpus], scores: Scores) -> None:
    """The table per set, then the corpora side by side, by speaker count and by condition."""
    names = [corpus.name for corpus in corpora]
    print(render_table(scores.rows))
    print()
    print(report.side_by_side({name: scores.breakdown.corpus(name) for name in names}))
    by_speakers, by_condition = scores.breakdown.by_speakers(), scores.breakdown.by_condition()
    if by_speakers:
        print()
        print(report.by_group("speakers", by_speakers, names))
    if by_condition:
        print()
        shared = any(len(by_corpus) > 1 for by_corpus in by_condition.values())
        table = (
            report.by_group
            if shared
            else (lambda title, groups, _: report.by_group_and_corpus(title, groups))
        )
        print(table("condition", by_condition, names))


QUICK = {"sentences": 12, "conversations": 1, "realistic_conversations": 6, "realistic_minutes": 1.0}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "manifests", nargs="*", type=Path, help="manifests to score, each on its own (default: synthesize)"
    )
    parser.add_argument(
        "--pool",
        action="append",
        type=Path,
        default=[],
        metavar="MANIFEST",
        help="a manifest scored on its own and also pooled with the other --pool manifests into one "
        "row; --check-floors holds the pool, not its members, to the floors (repeat the option)",
    )
    parser.add_argument(
        "--realistic",
        action="append",
        type=Path,
        default=[],
        metavar="MANIFEST",
        help="a manifest of the realistic column, held to the realistic floors (repeat the option; "
        "default with no manifest: synthesize the realistic test split)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="HOST:PORT", help="score a running OrchestratorService")
    parser.add_argument("--token", default=None, help="bearer token for --server")
    parser.add_argument(
        "--model",
        default="",
        help=f"transcription model, as --model of the server (default: {FIXTURE_MODEL.name})",
    )
    parser.add_argument(
        "--pipeline",
        default="",
        help=f"diarization pipeline, as --pipeline of the server (default: {OFFLINE_PIPELINE})",
    )
    parser.add_argument("--no-diarize", action="store_true", help="score transcripts only")
    parser.add_argument("--oracle-speakers", action="store_true", help="pass the reference speaker count")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small synthesized sets (12 sentences, one conversation per speaker count, 6 realistic "
        "conversations of at most 1 minute): about a quarter of the full run's time",
    )
    parser.add_argument("--seed", type=int, default=20_000, help="seed of the synthesized held-out set")
    parser.add_argument("--sentences", type=int, default=100, help="synthesized sentences")
    parser.add_argument(
        "--conversations", type=int, default=5, help="synthesized conversations per speaker count"
    )
    parser.add_argument("--turns", type=int, default=12, help="turns per synthesized conversation")
    parser.add_argument(
        "--realistic-conversations",
        type=int,
        default=24,
        metavar="N",
        help="realistic test conversations to synthesize (1-6 speakers and the conditions in turn; 0: none)",
    )
    parser.add_argument(
        "--realistic-minutes",
        type=float,
        default=2.0,
        metavar="M",
        help="longest realistic conversation, minutes (lengths are drawn from 1 to M)",
    )
    parser.add_argument(
        "--realistic-cache",
        type=Path,
        metavar="DIR",
        help="keep the realistic audio here and reuse it next time (default: a temporary folder)",
    )
    parser.add_argument(
        "--check-floors",
        action="store_true",
        help=f"print the floors ({CLEAN.describe().replace('%', '%%')}; realistic: "
        f"{REALISTIC.describe().replace('%', '%%')}, eval/floors.py) and the rows they hold for, "
        "and exit 1 when one is missed: each manifest given alone, the --pool manifests as "
        "one pool, each --realistic manifest (synthesized: the sentences, the 2-4 speaker "
        "conversations pooled, and the realistic test conversations)",
    )
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    both = {str(path) for path in args.manifests} & {str(path) for path in args.pool}
    if both:
        parser.error(f"a manifest is either scored alone or pooled, not both: {', '.join(sorted(both))}")
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    for name in ("sentences", "conversations", "turns", "realistic_conversations"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    if args.realistic_minutes < 1.0:
        parser.error(
            f"--realistic-minutes must be at least 1 (conversations last 1 to M minutes), "
            f"got {args.realistic_minutes:g}"
        )
    return args


def corpora_to_score(args: argparse.Namespace, scratch: Path, say: Callable[[str], None]) -> list[Corpus]:
    """The command line's manifests, or the synthesized clean and realistic corpora."""
    corpora = []
    given = given_sets(args.manifests, args.pool)
    if given.alone or given.pooled:
        corpora.append(Corpus("given", given))
    elif not args.realistic:
        say(f"synthesizing a clean held-out set (seed {args.seed}) into {scratch}")
        clean = synthesized_sets(scratch, args.seed, args.sentences, args.conversations, args.turns)
        corpora.append(Corpus("clean", clean, CLEAN, condition="clean"))
        if args.realistic_conversations:
            folder = args.realistic_cache or scratch / "realistic"
            say(f"synthesizing {args.realistic_conversations} realistic test conversations into {folder}")
            sets = realistic_sets(folder, args.realistic_conversations, args.realistic_minutes)
            corpora.append(Corpus("realistic", sets, REALISTIC))
    if args.realistic:
        corpora.append(Corpus("realistic", Sets({str(path): path for path in args.realistic}), REALISTIC))
    return corpora


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say: Callable[[str], None] = (
        (lambda _line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    )
    diarize = not args.no_diarize
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="parakeet-eval-") as scratch:
        corpora = corpora_to_score(args, Path(scratch), say)
        if args.server:
            orchestrate = remote(args.server, args.token)
        else:
            model = args.model or str(FIXTURE_MODEL)
            pipeline = args.pipeline or OFFLINE_PIPELINE
            say(f"loading {model} and the {pipeline!r} diarization pipeline")
            orchestrate = embedded(model, pipeline, diarize)
        scores = score(corpora, orchestrate, diarize, args.oracle_speakers, say)
    print_report(corpora, scores)
    missed: list[str] = []
    if args.check_floors:
        print()
        missed = check_floors(corpora, scores.rows)
    say(f"evaluated in {time.perf_counter() - started:.0f} s")
    if args.json:
        breakdown = scores.breakdown
        floors = {corpus.name: corpus.floors.describe() for corpus in corpora}
        corpora_summaries = {corpus.name: breakdown.corpus(corpus.name) for corpus in corpora}
        body = report.document(
            scores.rows,
            corpora_summaries,
            breakdown.by_speakers(),
            breakdown.by_condition(),
            floors,
            missed,
        )
        args.json.write_text(json.dumps(body, indent=1) + "\n")
    return 1 if missed else 0
