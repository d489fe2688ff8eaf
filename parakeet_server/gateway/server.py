"""Runs the gateway under uvicorn: `parakeet-server gateway` or `python -m parakeet_server.gateway.server`.

`add_arguments` gives a parser every option `run` reads (and nothing `parakeet-server`'s gRPC
transport options define), so the CLI can mount it as a subcommand as is. Options read their
defaults from the environment, as the other services' do.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.settings import (
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MODEL_ID,
    DEFAULT_ORCHESTRATOR,
    GatewaySettings,
    read_auth_token,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
_MIB = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `parakeet-server gateway`."""
    env = os.environ.get
    group = parser.add_argument_group("gateway")
    group.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    group.add_argument(
        "--port",
        type=int,
        default=int(env("GATEWAY_PORT", str(DEFAULT_PORT))),
        help="HTTP port (env GATEWAY_PORT; default: %(default)s)",
    )
    group.add_argument(
        "--orchestrator",
        default=env("ORCHESTRATOR_ADDRESS", DEFAULT_ORCHESTRATOR),
        metavar="HOST:PORT",
        help="the OrchestratorService to call (env ORCHESTRATOR_ADDRESS; default: %(default)s)",
    )
    group.add_argument(
        "--request-timeout",
        type=float,
        default=float(env("GATEWAY_REQUEST_TIMEOUT_S", "600")),
        metavar="SECONDS",
        help="deadline of each orchestrator call (env GATEWAY_REQUEST_TIMEOUT_S; default: %(default)s)",
    )
    group.add_argument(
        "--max-upload-mb",
        type=float,
        default=float(env("GATEWAY_MAX_UPLOAD_MB", str(DEFAULT_MAX_UPLOAD_BYTES / _MIB))),
        help="largest audio file accepted, MiB; larger ones get 413. Keep it below the orchestrator's "
        "--max-message-mb (env GATEWAY_MAX_UPLOAD_MB; default: %(default)s)",
    )
    group.add_argument(
        "--model-id",
        default=env("GATEWAY_MODEL_ID", DEFAULT_MODEL_ID),
        help="the model id GET /v1/models lists (env GATEWAY_MODEL_ID; default: %(default)s)",
    )
    group.add_argument(
        "--auth-token-file",
        default=env("PARAKEET_AUTH_TOKEN_FILE", ""),
        help="file holding the bearer token clients must send (else env PARAKEET_AUTH_TOKEN; "
        "none: no check). It is also forwarded to the orchestrator",
    )
    group.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds in-flight requests get on SIGTERM (default: %(default)s)",
    )


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    return GatewaySettings(
        orchestrator=args.orchestrator,
        request_timeout_s=args.request_timeout,
        max_upload_bytes=int(args.max_upload_mb * _MIB),
        auth_token=read_auth_token(args.auth_token_file),
        model_id=args.model_id,
    )


def _drained(signum: int, _frame: FrameType | None) -> None:
    log.info("%s: drained", signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; uvicorn then stops accepting and lets requests finish (--grace)."""
    import uvicorn  # only the gateway needs it; keep it off the gRPC servers' import path

    # uvicorn drains on SIGTERM/SIGINT and then re-raises the signal to the handler it found; with
    # this one the process exits 0 after a drain, as the gRPC servers do, instead of dying of it.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _drained)
    uvicorn.run(
        create_app(settings_from_args(args)),
        host=args.host,
        port=args.port,
        log_config=None,  # keep the handlers configure_logging installed (text or JSON lines)
        timeout_graceful_shutdown=args.grace,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m parakeet_server.gateway.server ...` is `parakeet-server gateway ...` (one parser, one logging setup)."""
    from parakeet_server.cli import main as server_main

    return server_main(["gateway", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
