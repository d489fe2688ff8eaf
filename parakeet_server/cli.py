"""`parakeet-server`: run one service, or the whole local stack, as gRPC servers.

parakeet-server transcription --port 50051
parakeet-server diarization   --port 50052
parakeet-server orchestrator  --port 50053
parakeet-server all           (the three above, each on its own port, in one process)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Protocol

from parakeet_server.core.grpc_server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    HostedService,
    ServerOptions,
    ServiceHost,
    serve_forever,
)
from parakeet_server.core.logs import configure_logging
from parakeet_server.core.metrics import serve_metrics
from parakeet_server.core.runtime_hygiene import prepare_process
from parakeet_server.diarization import server as diarization_server
from parakeet_server.gateway import server as gateway_server
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.transcription import server as transcription_server


class ServerModule(Protocol):
    """What each services/<name>/server.py offers the CLI: its own options and a builder."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def hosted_service_from_args(self, args: argparse.Namespace) -> HostedService: ...


DEFAULT_PORTS = {"transcription": 50051, "diarization": 50052, "orchestrator": 50053}
SERVER_MODULES: dict[str, ServerModule] = {
    "transcription": transcription_server,
    "diarization": diarization_server,
    "orchestrator": orchestrator_server,
}
# The orchestrator takes the engines' options too: with --backend inprocess it runs them itself.
OPTIONS_OF = {
    "transcription": ["transcription"],
    "diarization": ["diarization"],
    "orchestrator": ["transcription", "diarization", "orchestrator"],
    "all": ["transcription", "diarization", "orchestrator"],
}
GATEWAY_DESCRIPTION = "OpenAI-compatible HTTP API (/v1/audio/transcriptions) over the OrchestratorService"
DESCRIPTIONS = {
    "transcription": "TranscriptionService (parakeet-tdt-0.6b-v2)",
    "diarization": "DiarizationService (pyannote speaker-diarization-3.1)",
    "orchestrator": "OrchestratorService (transcription + diarization, merged)",
    "all": "the three services, each on its own port, in one process",
}


def _add_transport_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    command.add_argument(
        "--max-workers", type=int, default=16, help="RPC worker threads (default: %(default)s)"
    )
    command.add_argument(
        "--max-message-mb",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES // (1024 * 1024),
        help="largest request or response message, MiB (default: %(default)s)",
    )
    command.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds in-flight calls get on SIGTERM (default: %(default)s)",
    )
    command.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=int(os.environ.get("PARAKEET_MAX_CONCURRENT_REQUESTS", "64")),
        help="calls served at once per server; more get RESOURCE_EXHAUSTED (default: %(default)s)",
    )
    command.add_argument(
        "--auth-token-file",
        help="require 'authorization: Bearer <token>' on every parakeet RPC, the token read from this file "
        "(or set env PARAKEET_AUTH_TOKEN); health and reflection stay open for probes",
    )
    command.add_argument(
        "--tls-cert", default="", help="PEM certificate chain: serve TLS instead of plaintext"
    )
    command.add_argument("--tls-key", default="", help="PEM private key for --tls-cert")
    command.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (default: off)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parakeet-server",
        description="Run the parakeet gRPC services, with health checking and reflection.",
        # No prefixes: `--auth-token SECRET` must not be taken as `--auth-token-file SECRET`
        # (a token on the command line shows in `ps`, and would then be read as a path).
        allow_abbrev=False,
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("PARAKEET_LOG_FORMAT", "text"),
        help="json: one object per line with the request id (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="SERVICE")
    for name, description in DESCRIPTIONS.items():
        command = commands.add_parser(name, help=description, description=description, allow_abbrev=False)
        _add_transport_options(command)
        ports = DEFAULT_PORTS if name == "all" else {name: DEFAULT_PORTS[name]}
        for service in OPTIONS_OF[name]:
            SERVER_MODULES[service].add_arguments(command)
        for service, port in ports.items():
            flag = "--port" if name != "all" else f"--{service}-port"
            command.add_argument(
                flag, dest=f"{service}_port", type=int, default=port, help=f"{service} port (default: {port})"
            )
    # The gateway is HTTP, not gRPC: it brings its own --host/--port/--auth-token-file/--grace.
    gateway = commands.add_parser(
        "gateway", help=GATEWAY_DESCRIPTION, description=GATEWAY_DESCRIPTION, allow_abbrev=False
    )
    gateway_server.add_arguments(gateway)
    return parser


def _auth_token(args: argparse.Namespace) -> str:
    """The token from --auth-token-file or PARAKEET_AUTH_TOKEN; never from the command line, where ps shows it."""
    if args.auth_token_file:
        return Path(args.auth_token_file).read_text().strip()
    return os.environ.get("PARAKEET_AUTH_TOKEN", "").strip()


def _stack_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """`all` runs the orchestrator's backends itself: when they serve TLS (--tls-cert), the
    orchestrator calls them over TLS trusting that certificate, unless --backend-tls-ca says
    otherwise. (Its backend token already defaults to the servers' own.)"""
    if args.command == "all" and args.tls_cert and not args.backend_tls_ca:
        return argparse.Namespace(**{**vars(args), "backend_tls_ca": args.tls_cert})
    return args


def build_hosts(args: argparse.Namespace) -> list[ServiceHost]:
    """One ServiceHost per service the command names, each on its own port."""
    names = list(DEFAULT_PORTS) if args.command == "all" else [args.command]
    args = _stack_defaults(args)
    return [
        ServiceHost(
            [SERVER_MODULES[name].hosted_service_from_args(args)],
            ServerOptions(
                host=args.host,
                port=getattr(args, f"{name}_port"),
                max_workers=args.max_workers,
                max_message_bytes=args.max_message_mb * 1024 * 1024,
                grace_s=args.grace,
                max_concurrent_requests=args.max_concurrent_requests,
                auth_token=_auth_token(args),
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
            ),
        )
        for name in names
    ]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prepare_process()  # before any model library loads: no telemetry, no temp files left behind
    configure_logging(args.log_level, json_logs=args.log_format == "json")
    if args.command == "gateway":
        return gateway_server.run(args)
    if (args.tls_cert and not args.tls_key) or (args.tls_key and not args.tls_cert):
        build_parser().error("--tls-cert and --tls-key go together")
    if args.metrics_port:
        serve_metrics(args.metrics_port, args.host)
    serve_forever(build_hosts(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
