"""`parakeet`: the command-line client.

parakeet transcribe FILE_OR_URL [--diarize] [--format srt] [-o OUT]   transcribe, with speakers
parakeet stream FILE|- [--diarize] [--realtime] [--format jsonl]      live: results as audio arrives
parakeet batch INPUT... --out DIR [--diarize] [--format json,srt]      an archive, resumably
parakeet health --server HOST:PORT                                    which services are SERVING

`transcribe` runs wherever the models are: a gRPC OrchestratorService (`--server`), a RunPod
endpoint (`--runpod`, through `parakeet.runpod`), or, with neither, this process (embedded mode,
the same servicer and engines the servers run, so every path gives the same transcript); `stream`
runs on a server (StreamingOrchestrate) or embedded. The
embedded mode belongs to the server distribution, which registers it as an entry point
(`EMBEDDED_GROUP`); this package never imports the server, so it installs without the models'
libraries and says what to install when the embedded mode is asked for and missing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, TextIO

import grpc

from parakeet import formats
from parakeet.client import (
    VOICEPRINT_SUFFIX,
    ParakeetClient,
    StreamOptions,
    enroll_request,
    is_url,
    orchestrate_request,
    read_voiceprint,
    streaming_config,
    write_voiceprint,
)
from parakeet.errors import ParakeetError
from parakeet.runpod import API_KEY_ENV, RunPodEndpoint, RunPodJobs, response_to_json
from parakeet.streaming import (
    DEFAULT_SAMPLE_RATE_HZ,
    ENCODINGS,
    AudioStream,
    open_audio,
    paced,
    pcm_stream,
    require_pacing,
)
from parakeet.v1 import orchestrator_pb2, streaming_pb2

SERVICES = (
    "parakeet.v1.TranscriptionService",
    "parakeet.v1.DiarizationService",
    "parakeet.v1.OrchestratorService",
)
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
TOKEN_ENV = "PARAKEET_AUTH_TOKEN"
# The entry point group the server distribution registers its in-process mode in, and what
# installs it.
EMBEDDED_GROUP = "parakeet.embedded"
EMBEDDED_INSTALL = "pip install 'parakeet-grpc[asr,diarization]'"

TRANSCRIBE_EPILOG = """\
where it runs:
  --server HOST:PORT     a running OrchestratorService (`parakeet-server orchestrator`)
  --runpod ENDPOINT_ID   a RunPod serverless endpoint; needs RUNPOD_API_KEY
  (neither)              embedded: loads the models into this process (slow to start;
                         needs the server: pip install 'parakeet-grpc[asr,diarization]')

output:
  text, srt, vtt, rttm   the rendered document (rttm lists speaker turns; needs --diarize)
  json, verbose_json     the whole response as JSON (verbose_json adds per-word timings)

examples:
  parakeet transcribe call.wav
  parakeet transcribe call.wav --diarize --format srt -o call.srt
  parakeet transcribe https://example.com/call.mp3 --diarize --num-speakers 2 --server 127.0.0.1:50053
  RUNPOD_API_KEY=... parakeet transcribe call.wav --diarize --runpod abc123xyz --format text
  parakeet transcribe call.wav --model ./parakeet-tdt-0.6b-v2.nemo --pipeline ./speaker-diarization-3.1

exit status: 0 done, 1 the service refused or failed (message on stderr), 2 bad usage.
"""


STREAM_EPILOG = """\
where it runs:
  --server HOST:PORT     a running OrchestratorService (its StreamingOrchestrate)
  (no --server)          embedded: loads the models into this process (slow to start;
                         needs the server: pip install 'parakeet-grpc[asr,diarization]')

audio:
  FILE                   a 16-bit WAV goes out as PCM with its own rate and channels; any other
                         file (mp3, ogg, flac, ...) as its encoded bytes, decoded by the server
                         as they arrive
  -                      raw PCM on stdin: s16le, 16 kHz, mono unless --encoding,
                         --sample-rate, --channels say otherwise
  --realtime             send the audio at its own pace, as a live source would (raw PCM and
                         16-bit WAV only: an encoded file's duration is unknown until it is
                         decoded, so let ffmpeg pace it: ffmpeg -re -i FILE ... | parakeet stream -)

output:
  text                   each final utterance as "[00:01.2-00:03.4] SPEAKER_00: text" (the speaker
                         with --diarize); on a terminal the utterance being spoken is shown and
                         rewritten in place
  jsonl                  every response as one JSON object per line, flushed as it arrives

examples:
  parakeet stream call.wav --diarize --realtime --server 127.0.0.1:50053
  ffmpeg -i call.mp3 -f s16le -ac 1 -ar 16000 - | parakeet stream - --server 127.0.0.1:50053
  arecord -q -t raw -f S16_LE -r 16000 -c 1 | parakeet stream - --server 127.0.0.1:50053
  parakeet stream call.wav --format jsonl --no-interim --server 127.0.0.1:50053
  parakeet stream call.wav --diarize --speaker alice.voiceprint.json --hotword Kubernetes --server 127.0.0.1:50053

exit status: 0 done, 1 the service refused or failed (message on stderr), 2 bad usage,
130 interrupted (the stream is cancelled).
"""


class UsageError(Exception):
    """A mistake on the command line found after parsing (a missing file, no API key): exit 2."""


# -- progress ----------------------------------------------------------------------------------


class Progress:
    """What the CLI is waiting for, on stderr, so a minute-long model load does not look hung.

    On a terminal: one spinner line with the elapsed time, replaced by a summary when the step
    ends. Elsewhere (CI logs, pipes): a plain line when a step starts and one when it ends.
    Nothing at all when disabled (`--quiet`). stdout is never touched: it carries the output.
    """

    FRAMES = "|/-\\"

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.live = enabled and stream.isatty()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _spin(self, label: str, started: float, done: threading.Event) -> None:
        for frame in itertools.cycle(self.FRAMES):
            if done.wait(0.1):
                return
            self._write(f"\r{frame} {label}... {time.monotonic() - started:.1f}s\x1b[K")

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        """Show `label` while the block runs, then how long it took (or that it failed)."""
        if not self.enabled:
            yield
            return
        started = time.monotonic()
        done = threading.Event()
        spinner = threading.Thread(target=self._spin, args=(label, started, done), daemon=True)
        if self.live:
            spinner.start()
        else:
            self._write(f"parakeet: {label}...\n")
        outcome = "failed"
        try:
            yield
            outcome = "done"
        finally:
            done.set()
            if self.live:
                spinner.join()
            elapsed = time.monotonic() - started
            summary = f"parakeet: {label}: {outcome} in {elapsed:.1f}s"
            self._write(f"\r{summary}\x1b[K\n" if self.live else f"{summary}\n")


# -- where it runs -----------------------------------------------------------------------------


def _request_options(args: argparse.Namespace) -> dict[str, Any]:
    """The OrchestrateRequest fields the command line sets, shared by all three modes."""
    return {
        "diarize": args.diarize,
        "response_format": args.format,
        "language": args.language,
        "word_timestamps": args.word_timestamps,
        "timestamps": args.timestamps,
        "num_speakers": args.num_speakers,
        "min_speakers": args.min_speakers,
        "max_speakers": args.max_speakers,
        "speakers_optional": args.speakers_optional,
        "known_speakers": args.known_speakers,
        "speaker_match_threshold": args.speaker_threshold,
        "hotwords": args.hotword,
        "multichannel": args.multichannel,
    }


def connect(args: argparse.Namespace, timeout: float | None) -> ParakeetClient:
    """A client for --server with the token (env PARAKEET_AUTH_TOKEN or --auth-token-file) and TLS.

    The token is never a command-line value: `ps` would show it to every user of the machine.
    """
    token = os.environ.get(TOKEN_ENV, "").strip()
    if args.auth_token_file:
        token = _read_file(args.auth_token_file, "--auth-token-file").decode().strip()
    credentials = None
    if args.tls or args.tls_ca:
        roots = _read_file(args.tls_ca, "--tls-ca") if args.tls_ca else None
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return ParakeetClient(args.server, timeout=timeout, token=token or None, credentials=credentials)


def _read_file(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"{option}: cannot read {path} ({error.strerror or error})") from None


def _via_server(args: argparse.Namespace, progress: Progress) -> orchestrator_pb2.OrchestrateResponse:
    """OrchestratorService over gRPC."""
    with connect(args, args.timeout) as client, progress.step(f"transcribing on {args.server}"):
        return client.transcribe(args.audio, **_request_options(args))


def runpod_target(args: argparse.Namespace) -> tuple[RunPodJobs, RunPodEndpoint]:
    """The job client and endpoint --runpod / --runpod-url name (key: env RUNPOD_API_KEY)."""
    url = args.runpod_url or (os.environ.get("RUNPOD_ENDPOINT_URL", "") if args.runpod else "")
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key and not url:
        raise UsageError(f"--runpod needs the API key in the environment: export {API_KEY_ENV}=...")
    endpoint = RunPodEndpoint(endpoint_id=args.runpod or "", url=url)
    return RunPodJobs(api_key, max_wait_s=args.timeout or 3600.0), endpoint


def _via_runpod(args: argparse.Namespace, progress: Progress) -> orchestrator_pb2.OrchestrateResponse:
    """The job JSON existing clients send, to `/runsync` (polling `/status` when it outlives it)."""
    jobs, endpoint = runpod_target(args)
    request = orchestrate_request(args.audio, **_request_options(args))
    with progress.step(f"transcribing on RunPod ({endpoint.base_url})"):
        return jobs.call(
            endpoint,
            request,
            orchestrator_pb2.OrchestrateResponse,
            timeout=args.timeout,
            label=f"the RunPod endpoint {endpoint.base_url}",
        )


class EmbeddedOrchestrate(Protocol):
    """What the server distribution registers as `orchestrate` in the `parakeet.embedded` group
    (`parakeet_server.embedded.orchestrate`): the orchestrator over in-process engines."""

    def __call__(
        self,
        request: orchestrator_pb2.OrchestrateRequest,
        *,
        model: str = "",
        pipeline: str = "",
        timeout: float | None = None,
        verbose: bool = False,
        step: Callable[[str], AbstractContextManager[None]] = ...,
    ) -> orchestrator_pb2.OrchestrateResponse: ...


class EmbeddedStream(Protocol):
    """What the server distribution registers as `stream` in the `parakeet.embedded` group: a
    live StreamingOrchestrate over in-process engines, fed `chunks` in `config.audio_format`.
    `step` should wrap the model load only: once results flow, stdout carries them live."""

    def __call__(
        self,
        config: streaming_pb2.StreamingConfig,
        chunks: Iterable[bytes],
        *,
        model: str = "",
        pipeline: str = "",
        verbose: bool = False,
        step: Callable[[str], AbstractContextManager[None]] = ...,
    ) -> Iterator[orchestrator_pb2.StreamingOrchestrateResponse]: ...


def embedded_mode() -> EmbeddedOrchestrate:
    """The server distribution's in-process mode, or a UsageError saying what to install.

    Looked up by entry point, not imported: this package installs without the server."""
    orchestrate: EmbeddedOrchestrate = _embedded_entry(
        "orchestrate", "--server HOST:PORT", "--runpod ENDPOINT_ID"
    )
    return orchestrate


def embedded_stream() -> EmbeddedStream:
    """The server distribution's in-process live stream, or a UsageError saying what to install."""
    stream: EmbeddedStream = _embedded_entry("stream", "--server HOST:PORT")
    return stream


def _embedded_entry(name: str, *targets: str) -> Any:
    """Entry point `name` of the server's embedded mode; what to do instead names `targets`."""
    found = entry_points(group=EMBEDDED_GROUP, name=name)
    instead = " or ".join(targets)
    if not found:
        flags = " or ".join(target.split()[0] for target in targets)
        raise UsageError(
            f"no {flags} given, and the embedded mode (the models in this process) is "
            f"not installed: {EMBEDDED_INSTALL}, or use {instead}"
        )
    try:
        return next(iter(found)).load()
    except ImportError as error:
        raise UsageError(
            f"the embedded mode cannot be loaded ({error}): {EMBEDDED_INSTALL}, or use {instead}"
        ) from None


def _embedded(args: argparse.Namespace, progress: Progress) -> orchestrator_pb2.OrchestrateResponse:
    """The orchestrator servicer over in-process engines: what `--backend inprocess` serves."""
    orchestrate = embedded_mode()
    return orchestrate(
        orchestrate_request(args.audio, **_request_options(args)),
        model=args.model or "",
        pipeline=args.pipeline or "",
        timeout=args.timeout,
        verbose=args.verbose,
        step=progress.step,
    )


# -- output ------------------------------------------------------------------------------------


def render(response: orchestrator_pb2.OrchestrateResponse, output_format: str) -> str:
    """What the user asked for: the rendered document, or the response as pretty JSON."""
    if output_format in formats.document_names():
        return response.document
    return json.dumps(response_to_json(response), indent=2, ensure_ascii=False) + "\n"


def write_output(text: str, path: str | None) -> None:
    if path is None or path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(path).write_text(text, encoding="utf-8")


# -- commands ----------------------------------------------------------------------------------


def _check_usage(args: argparse.Namespace) -> None:
    """Fail before any model loads or network call on what the command line already gets wrong."""
    if not is_url(args.audio) and not Path(args.audio).is_file():
        raise UsageError(f"{args.audio}: no such file (give a path to an audio file, or an http(s) URL)")
    try:
        formats.resolve(args.format, formats.Rpc.ORCHESTRATE, speakers=args.diarize or args.multichannel)
    except formats.UnsupportedFormat as error:
        raise UsageError(f"--format: {error}") from None
    if args.output and args.output != "-" and not Path(args.output).resolve().parent.is_dir():
        raise UsageError(f"-o {args.output}: the directory does not exist")
    _read_speakers(args)


def _read_speakers(args: argparse.Namespace) -> None:
    """--speaker files into `args.known_speakers` (transcribe and stream), or what is wrong."""
    if args.speakers and not args.diarize:
        raise UsageError("--speaker names speakers found by diarization: add --diarize")
    try:
        args.known_speakers = [read_voiceprint(path) for path in args.speakers]
    except ValueError as error:
        raise UsageError(f"--speaker: {error}") from None
    if args.speaker_threshold is not None and not -1.0 <= args.speaker_threshold <= 1.0:
        raise UsageError("--speaker-threshold is a cosine similarity: give a value in [-1, 1]")


def enroll(args: argparse.Namespace) -> int:
    """`parakeet enroll`: a voiceprint of one speaker, saved as NAME.voiceprint.json (or -o)."""
    if not is_url(args.audio) and not Path(args.audio).is_file():
        raise UsageError(f"{args.audio}: no such file (give a path to an audio file, or an http(s) URL)")
    output = Path(args.output or f"{args.name}{VOICEPRINT_SUFFIX}")
    if not output.resolve().parent.is_dir():
        raise UsageError(f"-o {output}: the directory does not exist")
    progress = Progress(sys.stderr, enabled=not args.quiet)
    if args.server:
        with connect(args, args.timeout) as client, progress.step(f"enrolling on {args.server}"):
            enrolled = client.enroll(args.audio, name=args.name)
    elif args.runpod or args.runpod_url:
        jobs, endpoint = runpod_target(args)
        with progress.step(f"enrolling on RunPod ({endpoint.base_url})"):
            enrolled = jobs.enroll(
                endpoint,
                enroll_request(args.audio, name=args.name),
                timeout=args.timeout,
                label=f"the RunPod endpoint {endpoint.base_url}",
            )
    else:
        run: Any = _embedded_entry("enroll", "--server HOST:PORT")
        enrolled = run(
            enroll_request(args.audio, name=args.name),
            pipeline=args.pipeline or "",
            timeout=args.timeout,
            verbose=args.verbose,
            step=progress.step,
        )
    write_voiceprint(output, enrolled)
    print(
        f"{output}: {enrolled.name}, {enrolled.voiceprint.speech_seconds:.1f} s of speech, "
        f"{enrolled.voiceprint.model} {enrolled.voiceprint.model_version}",
        file=sys.stderr,
    )
    return EXIT_OK


def _add_enroll(commands: Any) -> None:
    command = commands.add_parser(
        "enroll",
        help="make a voiceprint of one speaker, to name them in transcripts",
        description="Make a voiceprint from a recording of one speaker alone (10-20 s of speech is "
        "best, at least 2 s) with the diarization engine's own speaker model, and save it as JSON. "
        "Pass it to `parakeet transcribe --diarize --speaker FILE`; it matches only on a server "
        "running the same engine (else FAILED_PRECONDITION, VOICEPRINT_MISMATCH). Nothing is "
        "stored on the server.",
        epilog="examples:\n  parakeet enroll alice.wav --name Alice -o alice.voiceprint.json --server HOST:PORT\n"
        "  RUNPOD_API_KEY=... parakeet enroll alice.wav --name Alice --runpod DIARIZATION_ENDPOINT_ID\n"
        "  parakeet transcribe call.wav --diarize --speaker alice.voiceprint.json --server HOST:PORT",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("audio", metavar="FILE_OR_URL", help="audio of the one speaker alone")
    command.add_argument("--name", required=True, help="the name transcripts will show for this voice")
    command.add_argument(
        "-o", "--output", metavar="OUT", help="where to write (default: NAME.voiceprint.json)"
    )
    command.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    command.add_argument(
        "-v", "--verbose", action="store_true", help="show the model libraries' logs (embedded mode)"
    )
    command.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")
    where = command.add_argument_group("where it runs (default: embedded, in this process)")
    target = where.add_mutually_exclusive_group()
    target.add_argument(
        "--server", metavar="HOST:PORT", help="a gRPC DiarizationService or orchestrator host"
    )
    target.add_argument(
        "--runpod",
        metavar="ENDPOINT_ID",
        help="a RunPod diarization, single or orchestrator endpoint, as an enroll job (env RUNPOD_API_KEY)",
    )
    _add_runpod_url(where)
    _add_connection_options(where)
    command.add_argument_group("embedded mode").add_argument(
        "--pipeline",
        metavar="PATH_OR_HF_ID",
        help="diarization engine whose speaker model to use: 'offline', a pyannote directory or HF id "
        "(default: env DIARIZATION_PIPELINE or pyannote/speaker-diarization-3.1)",
    )


def transcribe(args: argparse.Namespace) -> int:
    """`parakeet transcribe`: run the request where the options say, write the output."""
    _check_usage(args)
    progress = Progress(sys.stderr, enabled=not args.quiet)
    if args.server:
        response = _via_server(args, progress)
    elif args.runpod or args.runpod_url:
        response = _via_runpod(args, progress)
    else:
        response = _embedded(args, progress)
    for warning in response.warnings:
        print(f"parakeet: warning: {warning}", file=sys.stderr)
    write_output(render(response, args.format), args.output)
    return EXIT_OK


def clock(seconds: float) -> str:
    """MM:SS.t from the stream's start (minutes keep counting past an hour)."""
    minutes, tenths = divmod(round(seconds * 10), 600)
    return f"{minutes:02d}:{tenths // 10:02d}.{tenths % 10}"


def final_line(result: streaming_pb2.FinalResult) -> str:
    """`[00:01.2-00:03.4] SPEAKER_00: text`; no speaker part when the final has none."""
    speaker = f"{result.speaker}: " if result.speaker else ""
    return f"[{clock(result.start)}-{clock(result.end)}] {speaker}{result.text}"


class LiveOutput:
    """`parakeet stream`'s stdout. jsonl: every response, a line each, flushed. text: finals,
    a line each; on a terminal the current interim is drawn on the last line and redrawn in
    place (`\r`, clear to end of line), cut to the terminal's width so it never wraps."""

    CLEAR = "\r\x1b[K"

    def __init__(self, out: TextIO, output_format: str, errors: TextIO) -> None:
        self.out, self.errors = out, errors
        self.jsonl = output_format == "jsonl"
        self.live = not self.jsonl and out.isatty()
        self.columns = shutil.get_terminal_size().columns
        self.drawn = False  # an interim is on the last line

    def write(self, response: orchestrator_pb2.StreamingOrchestrateResponse) -> None:
        event = response.WhichOneof("event")
        if self.jsonl:
            self.out.write(json.dumps(response_to_json(response), ensure_ascii=False) + "\n")
        elif event == "final_result":
            self.out.write((self.CLEAR if self.drawn else "") + final_line(response.final_result) + "\n")
            self.drawn = False
        elif event == "interim" and self.live:
            text = response.interim.text[-max(1, self.columns - 1) :]
            self.out.write(self.CLEAR + text)
            self.drawn = bool(text)
        self.out.flush()
        if event == "summary":
            for warning in response.summary.warnings:
                print(f"parakeet: warning: {warning}", file=self.errors)

    def close(self) -> None:
        """Take a leftover interim off the screen (a stream cut short)."""
        if self.drawn:
            self.out.write(self.CLEAR)
            self.out.flush()
            self.drawn = False


def _stream_options(args: argparse.Namespace) -> StreamOptions:
    """The StreamingConfig fields the command line sets, the same on a server and embedded."""
    return {
        "diarize": args.diarize,
        "interim_results": args.interim,
        "word_timestamps": args.word_timestamps,
        "num_speakers": args.num_speakers,
        "min_speakers": args.min_speakers,
        "max_speakers": args.max_speakers,
        "endpoint_silence_ms": args.endpoint_silence_ms,
        "language": args.language,
        "speakers_optional": args.speakers_optional,
        "hotwords": args.hotword,
        "known_speakers": args.known_speakers,
        "speaker_match_threshold": args.speaker_threshold,
    }


def _stream_audio(args: argparse.Namespace) -> AudioStream:
    """The audio of `parakeet stream`, checked before anything connects or loads."""
    raw = {"--encoding": args.encoding, "--sample-rate": args.sample_rate, "--channels": args.channels}
    if args.audio == "-":
        audio = pcm_stream(
            sys.stdin.buffer,
            sample_rate_hz=args.sample_rate or DEFAULT_SAMPLE_RATE_HZ,
            channels=args.channels or 1,
            encoding=args.encoding or "s16le",
        )
    else:
        given = [flag for flag, value in raw.items() if value is not None]
        if given:
            raise UsageError(
                f"{given[0]} describes raw PCM on stdin (-); {args.audio} is a file, which carries its own format"
            )
        if not Path(args.audio).is_file():
            raise UsageError(
                f"{args.audio}: no such file (give a path to an audio file, or - for raw PCM on stdin)"
            )
        audio = open_audio(args.audio)
    if args.realtime:
        try:
            require_pacing(audio)
        except ValueError as error:
            raise UsageError(f"--realtime: {args.audio} is not PCM: {error}") from None
    return audio


def _stream_responses(
    args: argparse.Namespace, audio: AudioStream, stack: contextlib.ExitStack
) -> Iterator[orchestrator_pb2.StreamingOrchestrateResponse]:
    """The responses from --server, or from the embedded mode; closed (cancelled) with `stack`."""
    if args.server:
        client = stack.enter_context(connect(args, args.timeout))
        return stack.enter_context(
            contextlib.closing(client.stream(audio, realtime=args.realtime, **_stream_options(args)))
        )
    run = embedded_stream()
    chunks = audio.chunks
    assert isinstance(chunks, Iterable)  # the CLI's sources are all blocking reads
    if args.realtime:
        stop = threading.Event()
        stack.callback(stop.set)
        chunks = paced(chunks, audio.bytes_per_second, stop)
    progress = Progress(sys.stderr, enabled=not args.quiet)
    responses = run(
        streaming_config(audio.format, **_stream_options(args)),
        chunks,
        model=args.model or "",
        pipeline=args.pipeline or "",
        verbose=args.verbose,
        step=progress.step,
    )
    close = getattr(responses, "close", None)
    if callable(close):
        stack.callback(close)
    return responses


def stream(args: argparse.Namespace) -> int:
    """`parakeet stream`: live results of a file or of stdin, printed as they arrive."""
    _read_speakers(args)
    audio = _stream_audio(args)
    output = LiveOutput(sys.stdout, args.format, sys.stderr)
    with contextlib.ExitStack() as stack:
        stack.callback(output.close)
        for response in _stream_responses(args, audio, stack):
            output.write(response)
    return EXIT_OK


def health(args: argparse.Namespace) -> int:
    """Print each parakeet service's health on the server; exit 0 only if one is SERVING."""
    serving = 0
    with connect(args, args.timeout) as client:
        for service in SERVICES:
            try:
                state = client.health(service)
            except ParakeetError as error:
                if error.code == grpc.StatusCode.NOT_FOUND:
                    continue
                state = f"{error.code.name}: {error.details}"
            serving += state == "SERVING"
            print(f"{service}: {state}")
    return EXIT_OK if serving else EXIT_ERROR


def describe(error: ParakeetError) -> str:
    """One line: the status, the server's message, and the request id to find it in the server log."""
    text = f"{error.code.name}: {error.details}"
    if error.request_id and error.request_id not in error.details:
        text += f" (request {error.request_id})"
    return text


def _count(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _add_transcribe(commands: Any) -> None:
    command = commands.add_parser(
        "transcribe",
        help="transcribe a recording, optionally with speakers",
        description="Transcribe an audio file or URL with parakeet-tdt-0.6b-v2; with --diarize, "
        "find the speakers with pyannote and attribute every word to one.",
        epilog=TRANSCRIBE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument(
        "audio", metavar="FILE_OR_URL", help="audio file (wav, flac, mp3, ...) or http(s) URL"
    )
    command.add_argument("--diarize", action="store_true", help="find speakers and label every word")
    command.add_argument(
        "-f",
        "--format",
        choices=formats.names(),
        default="json",
        help="output format (default: %(default)s)",
    )
    command.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    command.add_argument(
        "--num-speakers", type=_count, metavar="N", help="exact number of speakers, if known"
    )
    command.add_argument("--min-speakers", type=_count, metavar="N", help="at least this many speakers")
    command.add_argument("--max-speakers", type=_count, metavar="N", help="at most this many speakers")
    command.add_argument("--language", default="", help="language code; the model is English-only (en)")
    command.add_argument("--word-timestamps", action="store_true", help="include per-word timings in JSON")
    command.add_argument(
        "--no-timestamps",
        dest="timestamps",
        action="store_false",
        help="leave segment timings out of the JSON",
    )
    command.add_argument(
        "--speakers-optional",
        action="store_true",
        help="with --diarize: if finding speakers fails, print the transcript without them (and a "
        "warning) instead of failing",
    )
    _add_known_speakers_and_hotwords(command)
    command.add_argument(
        "--multichannel",
        action="store_true",
        help="transcribe each audio channel on its own (a call recording with one party per channel): "
        "speakers CHANNEL_0, CHANNEL_1, ...; with --diarize, speakers found within each channel",
    )
    command.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    command.add_argument(
        "-v", "--verbose", action="store_true", help="show the model libraries' logs (embedded mode)"
    )
    command.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")
    where = command.add_argument_group("where it runs (default: embedded, in this process)")
    target = where.add_mutually_exclusive_group()
    target.add_argument("--server", metavar="HOST:PORT", help="a gRPC OrchestratorService")
    target.add_argument("--runpod", metavar="ENDPOINT_ID", help="a RunPod endpoint (env RUNPOD_API_KEY)")
    _add_runpod_url(where)
    _add_connection_options(where)
    embedded = command.add_argument_group("embedded mode")
    embedded.add_argument(
        "--model",
        help="parakeet .nemo file, directory or HF id (default: env TRANSCRIPTION_MODEL or the HF model)",
    )
    embedded.add_argument(
        "--pipeline",
        metavar="PATH_OR_HF_ID",
        help="pyannote pipeline directory or HF id for --diarize (default: pyannote/speaker-diarization-3.1)",
    )


def _add_known_speakers_and_hotwords(command: argparse.ArgumentParser) -> None:
    """--speaker, --speaker-threshold and --hotword: the same on transcribe and stream."""
    command.add_argument(
        "--speaker",
        dest="speakers",
        action="append",
        default=[],
        metavar="VOICEPRINT_JSON",
        help="with --diarize: a known speaker (a file from `parakeet enroll`); a matching speaker is "
        "shown by name instead of SPEAKER_NN (repeat for each)",
    )
    command.add_argument(
        "--speaker-threshold",
        type=float,
        metavar="SIMILARITY",
        help="minimum cosine similarity for --speaker to match (default: the engine's)",
    )
    command.set_defaults(known_speakers=[])  # the --speaker files, read by _read_speakers
    command.add_argument(
        "--hotword",
        action="append",
        default=[],
        metavar="PHRASE[:BOOST]",
        help="a word or phrase the recogniser should favour, e.g. Kubernetes or 'Ada Lovelace:2' (repeat "
        "for each; boost default 0.5, at most 10)",
    )


def _silence_ms(value: str) -> int:
    number = int(value)
    if number != 0 and number < 160:
        raise argparse.ArgumentTypeError(f"must be 0 (the server's default) or at least 160, got {number}")
    return number


def _add_stream(commands: Any) -> None:
    command = commands.add_parser(
        "stream",
        help="transcribe live: results while the audio is still arriving",
        description="Stream a file or raw PCM from stdin to parakeet-tdt-0.6b-v2 and print each "
        "utterance as soon as it is final; with --diarize, with its speaker.",
        epilog=STREAM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("audio", metavar="FILE|-", help="audio file, or - for raw PCM on stdin")
    command.add_argument("--diarize", action="store_true", help="find speakers and label every final")
    command.add_argument(
        "--realtime", action="store_true", help="send at the audio's own pace (raw PCM and 16-bit WAV)"
    )
    command.add_argument(
        "-f",
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="output format (default: %(default)s)",
    )
    command.add_argument(
        "--interim",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask for interim results of the utterance being spoken (default: on)",
    )
    command.add_argument(
        "--no-word-timestamps",
        dest="word_timestamps",
        action="store_false",
        help="leave per-word timings out of the finals",
    )
    command.add_argument(
        "--num-speakers", type=_count, metavar="N", help="exact number of speakers, if known"
    )
    command.add_argument("--min-speakers", type=_count, metavar="N", help="at least this many speakers")
    command.add_argument(
        "--max-speakers",
        type=_count,
        metavar="N",
        help="at most this many speakers (live labels never exceed it)",
    )
    command.add_argument(
        "--endpoint-silence-ms",
        type=_silence_ms,
        default=0,
        metavar="MS",
        help="silence that ends an utterance (at least 160; default: the server's, 400)",
    )
    command.add_argument("--language", default="", help="language code; the model is English-only (en)")
    command.add_argument(
        "--speakers-optional",
        action="store_true",
        help="with --diarize: if finding speakers fails, keep transcribing without them (and warn)",
    )
    _add_known_speakers_and_hotwords(command)
    command.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr (embedded mode)")
    command.add_argument(
        "-v", "--verbose", action="store_true", help="show the model libraries' logs (embedded mode)"
    )
    command.add_argument("--timeout", type=float, metavar="SECONDS", help="end the stream after this long")
    raw = command.add_argument_group("raw PCM on stdin (-)")
    raw.add_argument("--encoding", choices=tuple(ENCODINGS), help="sample encoding (default: s16le)")
    raw.add_argument("--sample-rate", type=_count, metavar="HZ", help="sample rate (default: 16000)")
    raw.add_argument("--channels", type=_count, metavar="N", help="interleaved channels (default: 1)")
    where = command.add_argument_group("where it runs (default: embedded, in this process)")
    where.add_argument("--server", metavar="HOST:PORT", help="a gRPC OrchestratorService")
    _add_connection_options(where)
    embedded = command.add_argument_group("embedded mode")
    embedded.add_argument(
        "--model",
        help="parakeet .nemo file, directory or HF id (default: env TRANSCRIPTION_MODEL or the HF model)",
    )
    embedded.add_argument(
        "--pipeline",
        metavar="PATH_OR_HF_ID",
        help="pyannote pipeline directory or HF id for --diarize (default: pyannote/speaker-diarization-3.1)",
    )


def _add_runpod_url(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--runpod-url",
        metavar="URL",
        default=None,
        help="the endpoint's base URL instead of https://api.runpod.ai/v2/ENDPOINT_ID "
        "(a proxy, or the worker's local test API); env RUNPOD_ENDPOINT_URL applies with --runpod",
    )


def _add_connection_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--tls", action="store_true", help="TLS to --server, checked against the system CAs")
    group.add_argument("--tls-ca", metavar="PEM", help="TLS to --server, checked against this CA bundle")
    group.add_argument(
        "--auth-token-file",
        metavar="PATH",
        help=f"bearer token for --server, read from this file (default: env {TOKEN_ENV})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parakeet",
        description="Client for the parakeet-grpc services: speaker-attributed transcription.",
        epilog="Run `parakeet COMMAND --help` for a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_transcribe(commands)
    _add_enroll(commands)
    _add_stream(commands)
    from parakeet.batch import command as batch_command  # imports this module

    batch_command.add_parser(commands)
    check = commands.add_parser("health", help="show which services a server is SERVING")
    check.add_argument("--server", default="127.0.0.1:50053", help="HOST:PORT (default: %(default)s)")
    check.add_argument("--timeout", type=float, default=5.0, help="seconds (default: %(default)s)")
    _add_connection_options(check.add_argument_group("connection"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "health":
            return health(args)
        if args.command == "stream":
            return stream(args)
        if args.command == "enroll":
            return enroll(args)
        if args.command == "batch":
            from parakeet.batch import command as batch_command

            return batch_command.batch(args)
        return transcribe(args)
    except UsageError as error:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {error}\n")
    except ParakeetError as error:
        print(f"parakeet: error: {describe(error)}", file=sys.stderr)
    except OSError as error:
        print(f"parakeet: error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug, not a refusal: one line, the traceback only with --verbose
        if getattr(args, "verbose", False):
            raise
        print(
            f"parakeet: error: unexpected {type(error).__name__}: {error} (--verbose shows where)",
            file=sys.stderr,
        )
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
