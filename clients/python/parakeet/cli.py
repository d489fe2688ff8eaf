"""`parakeet`: the command-line client.

parakeet transcribe FILE_OR_URL [--diarize] [--format srt] [-o OUT]   transcribe, with speakers
parakeet health --server HOST:PORT                                    which services are SERVING

`transcribe` runs wherever the models are: a gRPC OrchestratorService (`--server`), a RunPod
endpoint (`--runpod`, through `parakeet.runpod`), or, with neither, this process (embedded mode,
the same servicer and engines the servers run, so every path gives the same transcript). The
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
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, TextIO

import grpc

from parakeet import formats
from parakeet.client import ParakeetClient, is_url, orchestrate_request
from parakeet.errors import ParakeetError
from parakeet.runpod import API_KEY_ENV, RunPodEndpoint, RunPodJobs, response_to_json
from parakeet.v1 import orchestrator_pb2

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


def _via_runpod(args: argparse.Namespace, progress: Progress) -> orchestrator_pb2.OrchestrateResponse:
    """The job JSON existing clients send, to `/runsync` (polling `/status` when it outlives it)."""
    url = args.runpod_url or (os.environ.get("RUNPOD_ENDPOINT_URL", "") if args.runpod else "")
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key and not url:
        raise UsageError(f"--runpod needs the API key in the environment: export {API_KEY_ENV}=...")
    endpoint = RunPodEndpoint(endpoint_id=args.runpod or "", url=url)
    jobs = RunPodJobs(api_key, max_wait_s=args.timeout or 3600.0)
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


def embedded_mode() -> EmbeddedOrchestrate:
    """The server distribution's in-process mode, or a UsageError saying what to install.

    Looked up by entry point, not imported: this package installs without the server."""
    found = entry_points(group=EMBEDDED_GROUP, name="orchestrate")
    if not found:
        raise UsageError(
            "no --server or --runpod given, and the embedded mode (the models in this process) is "
            f"not installed: {EMBEDDED_INSTALL}, or use --server HOST:PORT or --runpod ENDPOINT_ID"
        )
    try:
        orchestrate: EmbeddedOrchestrate = next(iter(found)).load()
    except ImportError as error:
        raise UsageError(
            f"the embedded mode cannot be loaded ({error}): {EMBEDDED_INSTALL}, "
            "or use --server HOST:PORT or --runpod ENDPOINT_ID"
        ) from None
    return orchestrate


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
        formats.resolve(args.format, formats.Rpc.ORCHESTRATE, speakers=args.diarize)
    except formats.UnsupportedFormat as error:
        raise UsageError(f"--format: {error}") from None
    if args.output and args.output != "-" and not Path(args.output).resolve().parent.is_dir():
        raise UsageError(f"-o {args.output}: the directory does not exist")


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
    command.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    command.add_argument(
        "-v", "--verbose", action="store_true", help="show the model libraries' logs (embedded mode)"
    )
    command.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")
    where = command.add_argument_group("where it runs (default: embedded, in this process)")
    target = where.add_mutually_exclusive_group()
    target.add_argument("--server", metavar="HOST:PORT", help="a gRPC OrchestratorService")
    target.add_argument("--runpod", metavar="ENDPOINT_ID", help="a RunPod endpoint (env RUNPOD_API_KEY)")
    where.add_argument(
        "--runpod-url",
        metavar="URL",
        default=None,
        help="the endpoint's base URL instead of https://api.runpod.ai/v2/ENDPOINT_ID "
        "(a proxy, or the worker's local test API); env RUNPOD_ENDPOINT_URL applies with --runpod",
    )
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
