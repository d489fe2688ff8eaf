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
Relative paths are read from the manifest's folder.
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

Orchestrate = Callable[[orchestrator_pb2.OrchestrateRequest], orchestrator_pb2.OrchestrateResponse]


@dataclass(frozen=True)
class Item:
    """One recording and whatever references it has."""

    audio: Path
    uri: str
    text: str | None = None
    turns: list[SpeakerTurn] | None = None
    words: list[SpeakerWord] | None = None

    @property
    def num_speakers(self) -> int | None:
        if self.turns:
            return len({turn.speaker for turn in self.turns})
        if self.words:
            return len({word.speaker for word in self.words})
        return None


def read_manifest(path: Path) -> list[Item]:
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
        items.append(Item(audio=audio, uri=uri, text=entry.get("text"), turns=turns, words=words))
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

    def add(self, item: Item, response: orchestrator_pb2.OrchestrateResponse, seconds: float) -> None:
        self.files += 1
        self.audio_s += response.duration
        self.compute_s += seconds
        if item.text is not None:
            self.words.add(item.text, response.text)
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

    def summary(self) -> dict[str, float | int | None]:
        return {
            "files": self.files,
            "audio_minutes": round(self.audio_s / 60, 2),
            "wer": round(self.words.wer, 4) if self.words.reference_words else None,
            "der": round(self.diarization.der, 4) if self.scored_turns else None,
            "jer": round(self.diarization.jer, 4) if self.scored_turns else None,
            "wder": round(self.speaker_words.wder, 4) if self.scored_words else None,
            "real_time_factor": round(self.compute_s / self.audio_s, 4) if self.audio_s else None,
        }


def evaluate(
    items: Sequence[Item],
    orchestrate: Orchestrate,
    diarize: bool,
    oracle_speakers: bool = False,
    progress: Callable[[str], None] | None = None,
    pooled: Report | None = None,
) -> Report:
    """Score `items`; each result is also added to `pooled` when given (a row over several sets)."""
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
        report.add(item, response, elapsed)
        if pooled is not None:
            pooled.add(item, response, elapsed)
        if progress is not None:
            progress(f"[{index}/{len(items)}] {item.uri}: {response.text[:70]!r}")
    return report


def render_table(rows: Sequence[tuple[str, dict[str, float | int | None]]]) -> str:
    columns = ["files", "audio_minutes", "wer", "der", "jer", "wder", "real_time_factor"]
    header = ["set", *columns]
    body = [[name] + ["-" if s[c] is None else f"{s[c]}" for c in columns] for name, s in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *body]
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Floors:
    """The issue's floors for the offline fixture stack on synthesized held-out speech."""

    wer: float = 0.10
    der: float = 0.10
    wder: float = 0.05

    def failures(self, summary: dict[str, float | int | None]) -> list[str]:
        found = []
        for name in ("wer", "der", "wder"):
            value, floor = summary.get(name), getattr(self, name)
            if value is not None and float(value) > floor:
                found.append(f"{name.upper()} {float(value):.3f} is above the floor {floor:.2f}")
        return found

    def describe(self) -> str:
        return ", ".join(
            f"{name.upper()} <= {getattr(self, name) * 100:g} %" for name in ("wer", "der", "wder")
        )


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


def given_sets(manifests: Sequence[Path], pool: Sequence[Path]) -> Sets:
    """The manifests of the command line: positional ones alone, --pool ones as one pool."""
    return Sets(
        {str(path): path for path in manifests},
        {str(path): path for path in pool},
        f"pooled ({len(pool)} manifest{'s' if len(pool) != 1 else ''})",
    )


def score(
    sets: Sets,
    orchestrate: Orchestrate,
    diarize: bool,
    oracle_speakers: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, dict[str, float | int | None]]]:
    """One row per manifest, then the pool's row when there is a pool."""
    rows = []
    pool = Report()
    for group, pooled in ((sets.alone, None), (sets.pooled, pool)):
        for name, manifest in group.items():
            report = evaluate(
                read_manifest(manifest), orchestrate, diarize, oracle_speakers, progress, pooled
            )
            rows.append((name, report.summary()))
    if sets.pooled:
        rows.append((sets.pool_name, pool.summary()))
    return rows


def check_floors(
    sets: Sets, rows: Sequence[tuple[str, dict[str, float | int | None]]], floors: Floors = Floors()
) -> list[str]:
    """Says which floors hold for which rows, then checks them; returns the misses."""
    held = sets.held()
    print(f"floors: {floors.describe()} (a score without references is not checked), held by:")
    for line in held.values():
        print(f"  {line}")
    failures = [
        f"{name}: {problem}" for name, summary in rows if name in held for problem in floors.failures(summary)
    ]
    for failure in failures:
        print(f"FLOOR MISSED  {failure}", file=sys.stderr)
    print("floors missed" if failures else "floors met")
    return failures


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
    parser.add_argument("--seed", type=int, default=20_000, help="seed of the synthesized held-out set")
    parser.add_argument("--sentences", type=int, default=100, help="synthesized sentences")
    parser.add_argument(
        "--conversations", type=int, default=5, help="synthesized conversations per speaker count"
    )
    parser.add_argument("--turns", type=int, default=12, help="turns per synthesized conversation")
    parser.add_argument(
        "--check-floors",
        action="store_true",
        help=f"print the floors ({Floors().describe().replace('%', '%%')}) and the rows they hold for, "
        "and exit 1 when one is missed: each manifest given alone, and the --pool manifests as "
        "one pool (synthesized: the sentences, and the 2-4 speaker conversations pooled)",
    )
    parser.add_argument("--json", type=Path, help="also write the scores here as JSON")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    both = {str(path) for path in args.manifests} & {str(path) for path in args.pool}
    if both:
        parser.error(f"a manifest is either scored alone or pooled, not both: {', '.join(sorted(both))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say: Callable[[str], None] = (
        (lambda _line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    )
    diarize = not args.no_diarize
    with tempfile.TemporaryDirectory(prefix="parakeet-eval-") as scratch:
        sets = given_sets(args.manifests, args.pool)
        if not sets.alone and not sets.pooled:
            say(f"synthesizing a held-out set (seed {args.seed}) into {scratch}")
            sets = synthesized_sets(Path(scratch), args.seed, args.sentences, args.conversations, args.turns)
        if args.server:
            orchestrate = remote(args.server, args.token)
        else:
            model = args.model or str(FIXTURE_MODEL)
            pipeline = args.pipeline or OFFLINE_PIPELINE
            say(f"loading {model} and the {pipeline!r} diarization pipeline")
            orchestrate = embedded(model, pipeline, diarize)
        rows = score(sets, orchestrate, diarize, args.oracle_speakers, say)
    print(render_table(rows))
    if args.json:
        args.json.write_text(json.dumps(dict(rows), indent=1) + "\n")
    if args.check_floors and check_floors(sets, rows):
        return 1
    return 0
