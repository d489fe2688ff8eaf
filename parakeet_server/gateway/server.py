"""Runs the gateway under uvicorn: `parakeet-server gateway` or `python -m parakeet_server.gateway.server`.

The options are `parakeet-server gateway`'s (parakeet_server/cli.py), which builds the
GatewayConfig this serves.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
from types import FrameType

from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.config import GatewayConfig

log = logging.getLogger(__name__)


def _drained(signum: int, _frame: FrameType | None) -> None:
    log.info("%s: drained", signal.Signals(signum).name)


def run(config: GatewayConfig) -> int:
    """Serve until SIGTERM/SIGINT; uvicorn then stops accepting and lets requests finish (grace_s)."""
    import uvicorn  # only the gateway needs it; keep it off the gRPC servers' import path

    # uvicorn drains on SIGTERM/SIGINT and then re-raises the signal to the handler it found; with
    # this one the process exits 0 after a drain, as the gRPC servers do, instead of dying of it.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _drained)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_config=None,  # keep the handlers configure_logging installed (text or JSON lines)
        timeout_graceful_shutdown=math.ceil(config.grace_s),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m parakeet_server.gateway.server ...` is `parakeet-server gateway ...` (one parser, one logging setup)."""
    from parakeet_server.cli import main as server_main

    return server_main(["gateway", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
