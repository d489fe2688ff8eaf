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
from typing import Any

from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.config import GatewayConfig

log = logging.getLogger(__name__)


def _drained(signum: int, _frame: FrameType | None) -> None:
    log.info("%s: drained", signal.Signals(signum).name)


def uvicorn_options(config: GatewayConfig) -> dict[str, Any]:
    """uvicorn's WebSocket settings for this gateway (tests serve with the same ones).

    websockets-sansio pauses reading the socket after each message until the app receives it, so
    the realtime route's bounded queue is what TCP sees (back-pressure; the legacy `websockets`
    protocol would queue `ws_max_queue` messages first). `ws_max_size` is a hard stop above the
    route's own limit: a message up to twice `ws_max_message_bytes` is read and refused with an error
    event and close 4413; a larger frame is cut by the protocol with 1009 before it is held whole.
    """
    return {
        "ws": "websockets-sansio",
        "ws_max_size": 2 * config.ws_max_message_bytes,
        "ws_max_queue": 1,
        "ws_per_message_deflate": config.ws_per_message_deflate,
    }


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
        **uvicorn_options(config),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m parakeet_server.gateway.server ...` is `parakeet-server gateway ...` (one parser, one logging setup)."""
    from parakeet_server.cli import main as server_main

    return server_main(["gateway", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
