"""`parakeet batch INPUT... --out DIR`: the command line of a batch run, and its backends.

The backends: embedded (the server distribution's in-process orchestrator, models loaded once,
found by entry point `orchestrator` in group `parakeet.embedded`), `--server` (a gRPC
OrchestratorService, `--concurrency` calls at a time), `--runpod` (`parakeet.batch.runpod`) and
`--ray` (the server distribution's `parakeet_server.batch_ray.run`, entry point `ray` in group
`parakeet.batch`). Every one writes the same outputs and results.jsonl, so a run may be resumed
on another backend.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from parakeet import cli
from parakeet.batch.items import (
    BatchInputError,
    BatchItem,
    check_hotwords,
    check_threshold,
    expand,
    options_for,
    read_speakers,
)
from parakeet.batch.outputs import FORMATS, RESULTS, ResultRow, ResultsLog, parse_formats, pending
from parakeet.batch.runner import Job, ProgressBar, Summary, Transcribe, failed_before, run
from parakeet.errors import InvalidArgument
from parakeet.runpod import API_KEY_ENV
from parakeet.v1 import orchestrator_pb2

BATCH_GROUP = "parakeet.batch"
RAY_INSTALL = "pip install 'parakeet-grpc[asr,diarization,ray]'"

EPILOG = f"""\
inputs:
  FILE                   an audio or video file (its stem names the outputs)
  DIR                    every audio/video file under it; outputs keep its layout
  'GLOB'                 files matching a pattern (quote it; ** recurses)
  LIST.jsonl, LIST.csv   a manifest: `path` or `url` per row, plus optional per-file
                         num_speakers, min_speakers, max_speakers, language, diarize,
                         multichannel, hotwords, speakers (voiceprint files, relative to
                         the manifest), speaker_threshold; lists in CSV are ';'-separated.
                         A row's own option replaces the command line's
  URL                    http(s): fetched by the server (its URL allow-list applies)

where it runs:
  (default)              embedded: the models load once in this process
  --server HOST:PORT     a gRPC OrchestratorService, --concurrency calls at a time
  --runpod ENDPOINT_ID   a RunPod endpoint (env RUNPOD_API_KEY), async jobs with retries
  --ray [ADDRESS]        a Ray cluster (or a local one): engines held in actors
                         ({RAY_INSTALL})

output (in --out DIR):
  KEY.json, .srt, .vtt, .txt, .rttm   the asked formats (--format, default json), written
                         atomically, all rendered from one verbose response
  results.jsonl          one row per input: source, key, status (done|failed), duration_s,
                         seconds, error, reason, outputs, matched_speakers (the --speaker
                         names found in it)
  Run the same command again to resume: inputs with a row are skipped, so each is
  transcribed at most once, even after kill -9. Delete a row to redo that input.

examples:
  parakeet batch recordings/ --out transcripts/ --diarize --format json,srt
  parakeet batch list.jsonl --out out/ --server 127.0.0.1:50053 --concurrency 8
  parakeet batch 'calls/**/*.mp3' --out out/ --dry-run
  parakeet batch calls/ --out out/ --diarize --speaker alice.voiceprint.json --hotword Kubernetes
  parakeet batch stereo_calls/ --out out/ --multichannel --format json,srt

exit status: 0 all done, 1 any input failed (see results.jsonl), 2 bad usage.
"""


def add_parser(commands: Any) -> None:
    """The `batch` subcommand's arguments."""
    command = commands.add_parser(
        "batch",
        help="transcribe an archive of files, resumably",
        description="Transcribe many files (an archive) once each: outputs per file and format, "
        "a results log, a progress bar; rerun to resume.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="files, directories, globs, manifests, URLs"
    )
    command.add_argument("--out", required=True, metavar="DIR", help="where outputs and results.jsonl go")
    command.add_argument("--diarize", action="store_true", help="find speakers and label every word")
    command.add_argument(
        "-f",
        "--format",
        default="json",
        metavar="LIST",
        help=f"comma-separated formats, of: {','.join(FORMATS)} (default: %(default)s)",
    )
    command.add_argument("--num-speakers", type=cli._count, metavar="N", help="exact number of speakers")
    command.add_argument("--min-speakers", type=cli._count, metavar="N", help="at least this many speakers")
    command.add_argument("--max-speakers", type=cli._count, metavar="N", help="at most this many speakers")
    command.add_argument("--language", default="", help="language code; the model is English-only (en)")
    command.add_argument(
        "--speakers-optional",
        action="store_true",
        help="with --diarize: a file whose diarization fails keeps its transcript (with a warning)",
    )
    cli._add_known_speakers_and_hotwords(command)
    command.add_argument(
        "--multichannel",
        action="store_true",
        help="transcribe each audio channel on its own (one party per channel): speakers CHANNEL_0, "
        "CHANNEL_1, ...; with --diarize, speakers found within each channel",
    )
    command.add_argument(
        "--concurrency",
        type=cli._count,
        default=None,
        metavar="N",
        help="files in flight (default: 1; --server and --runpod 4; --ray: Ray actors, default one per CPU or GPU)",
    )
    command.add_argument("--dry-run", action="store_true", help="list what would be transcribed, and stop")
    command.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary on stderr")
    command.add_argument("-v", "--verbose", action="store_true", help="show the model libraries' logs")
    command.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="give up on one file after this long"
    )
    where = command.add_argument_group("where it runs (default: embedded, in this process)")
    target = where.add_mutually_exclusive_group()
    target.add_argument("--server", metavar="HOST:PORT", help="a gRPC OrchestratorService")
    target.add_argument("--runpod", metavar="ENDPOINT_ID", help="a RunPod endpoint (env RUNPOD_API_KEY)")
    target.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="a Ray cluster (none: a local Ray)",
    )
    where.add_argument("--runpod-url", metavar="URL", default=None, help="the RunPod endpoint's base URL")
    cli._add_connection_options(where)
    embedded = command.add_argument_group("embedded and --ray")
    embedded.add_argument("--model", help="parakeet .nemo file, directory or HF id")
    embedded.add_argument("--pipeline", metavar="PATH_OR_HF_ID", help="pyannote pipeline (or 'offline')")


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"diarize": args.diarize, "speakers_optional": args.speakers_optional}
    if args.language:
        options["language"] = args.language
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.multichannel:
        options["multichannel"] = True
    if args.hotword:
        options["hotwords"] = list(args.hotword)
    if args.speakers:  # absolute: the workers (threads, Ray actors) read them, wherever they run
        options["speakers"] = [str(Path(path).absolute()) for path in args.speakers]
    if args.speaker_threshold is not None:
        options["speaker_threshold"] = args.speaker_threshold
    return options


def _job(args: argparse.Namespace) -> Job:
    try:
        chosen = parse_formats(args.format)
    except ValueError as error:
        raise cli.UsageError(f"--format: {error}") from None
    return Job(Path(args.out), chosen, _defaults(args), args.model or "", args.pipeline or "")


def _check_formats(job: Job, items: Sequence[BatchItem]) -> None:
    """rttm lists speaker turns: refuse it when no file would be diarized or split by channel."""
    if "rttm" in job.formats and not any(
        options.get("diarize") or options.get("multichannel")
        for options in (options_for(item, job.defaults) for item in items)
    ):
        raise cli.UsageError(
            "--format rttm lists speaker turns: add --diarize or --multichannel (or either in the manifest)"
        )


def _check_options(args: argparse.Namespace, job: Job, items: Sequence[BatchItem]) -> None:
    """The run's --hotword, --speaker and --speaker-threshold, before any model loads: a mistake in
    them would fail every file. (A manifest row's own values fail that row only.)"""
    try:
        check_hotwords(args.hotword, "--hotword")
        check_threshold(args.speaker_threshold, "--speaker-threshold")
        read_speakers(args.speakers, "--speaker")
    except InvalidArgument as error:
        raise cli.UsageError(error.details) from None
    if args.speakers and not any(options_for(item, job.defaults).get("diarize") for item in items):
        raise cli.UsageError(
            "--speaker names speakers found by diarization: add --diarize (or diarize in the manifest)"
        )


def _embedded(
    args: argparse.Namespace, job: Job, items: Sequence[BatchItem], progress: cli.Progress
) -> Transcribe:
    loader = cli._embedded_entry("orchestrator", "--server HOST:PORT", "--runpod ENDPOINT_ID", "--ray")
    diarize = any(options_for(item, job.defaults).get("diarize") for item in items)
    transcribe: Transcribe = loader(
        model=job.model,
        pipeline=job.pipeline,
        diarize=diarize,
        concurrency=args.concurrency or 1,
        timeout=args.timeout,
        verbose=args.verbose,
        step=progress.step,
    )
    return transcribe


def _server(args: argparse.Namespace, stack: contextlib.ExitStack) -> Transcribe:
    client = stack.enter_context(cli.connect(args, args.timeout))

    def transcribe(request: orchestrator_pb2.OrchestrateRequest) -> orchestrator_pb2.OrchestrateResponse:
        return client.orchestrate(request)

    return transcribe


def _runpod(args: argparse.Namespace) -> Transcribe:
    from parakeet.batch import runpod

    url = args.runpod_url or os.environ.get("RUNPOD_ENDPOINT_URL", "")
    if not os.environ.get(API_KEY_ENV, "") and not url:
        raise cli.UsageError(f"--runpod needs the API key in the environment: export {API_KEY_ENV}=...")
    transcribe: Transcribe = runpod.transcriber(
        args.runpod or "", url=url or None, max_wait_s=args.timeout or 3600.0
    )
    return transcribe


def _ray_rows(args: argparse.Namespace, job: Job, todo: list[BatchItem]) -> Iterator[ResultRow]:
    found = entry_points(group=BATCH_GROUP, name="ray")
    if not found:
        raise cli.UsageError(f"--ray needs the server distribution with Ray: {RAY_INSTALL}")
    try:
        ray_run = next(iter(found)).load()
    except ImportError as error:
        raise cli.UsageError(f"--ray cannot be loaded ({error}): {RAY_INSTALL}") from None
    for row in ray_run(todo, job, args.ray or None, actors=args.concurrency, verbose=args.verbose):
        yield row if isinstance(row, ResultRow) else ResultRow.from_json(row)


def _run_ray(args: argparse.Namespace, job: Job, items: Sequence[BatchItem]) -> Summary:
    """Ray writes the outputs in its workers; here the rows are logged and counted."""
    started = time.monotonic()
    outputs, log = job.outputs(), job.log()
    todo, skipped = pending(items, outputs, log)
    summary = Summary(skipped=skipped, failed_before=failed_before(items, log))
    bar = ProgressBar(len(todo), enabled=not args.quiet)
    try:
        if todo:
            for row in _ray_rows(args, job, todo):
                log.append(row)
                summary.add(row)
                bar.advance(row)
    finally:
        bar.close()
        summary.wall_s = time.monotonic() - started
    return summary


def dry_run(job: Job, items: Sequence[BatchItem]) -> int:
    """Each input with what would happen to it, tab-separated: `todo|done|failed KEY SOURCE`."""
    outputs, log = (
        job.outputs(),
        ResultsLog(job.out_dir / RESULTS) if (job.out_dir / RESULTS).exists() else None,
    )
    rows = log.rows() if log is not None else {}
    counts = {"todo": 0, "done": 0, "failed": 0}
    for item in items:
        row = rows.get(item.key)
        state = row.status if row is not None else ("done" if outputs.is_complete(item) else "todo")
        counts[state] += 1
        sys.stdout.write(f"{state}\t{item.key}\t{item.source}\n")
    sys.stderr.write(
        f"{len(items)} inputs: {counts['todo']} to transcribe, {counts['done']} done, "
        f"{counts['failed']} failed before (dry run: nothing transcribed)\n"
    )
    return cli.EXIT_OK


def batch(args: argparse.Namespace) -> int:
    """Run the batch; exit 1 if any input failed."""
    job = _job(args)
    try:
        items = expand(args.inputs)
    except BatchInputError as error:
        raise cli.UsageError(str(error)) from None
    _check_formats(job, items)
    _check_options(args, job, items)
    if args.dry_run:
        return dry_run(job, items)
    if args.runpod_url and not args.runpod:
        raise cli.UsageError("--runpod-url goes with --runpod")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    progress = cli.Progress(sys.stderr, enabled=not args.quiet)
    if args.ray is not None:
        summary = _run_ray(args, job, items)
    else:
        stack = contextlib.ExitStack()
        if args.server:
            transcribe = _server(args, stack)
        elif args.runpod:
            transcribe = _runpod(args)
        else:
            transcribe = _embedded(args, job, items, progress)
        concurrency = args.concurrency or (4 if args.server or args.runpod else 1)
        with stack:
            summary = run(
                items,
                transcribe,
                job.outputs(),
                job.log(),
                defaults=job.defaults,
                concurrency=concurrency,
                progress=not args.quiet,
            )
    if not args.quiet:
        for line in summary.lines():
            sys.stderr.write(f"parakeet batch: {line}\n")
    return summary.exit_status
