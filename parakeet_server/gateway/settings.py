"""What a gateway needs to know, read once at start-up; the token never comes from the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from parakeet_server.core.grpc_server import DEFAULT_MAX_MESSAGE_BYTES

# The orchestrator accepts 64 MiB messages by default; an upload of at most 63 MiB leaves room for
# the rest of the OrchestrateRequest, so a file the gateway accepts is never refused for its size.
DEFAULT_MAX_UPLOAD_BYTES = DEFAULT_MAX_MESSAGE_BYTES - 1024 * 1024
DEFAULT_MODEL_ID = "parakeet-tdt-0.6b-v2"
DEFAULT_ORCHESTRATOR = "127.0.0.1:50053"
AUTH_TOKEN_ENV = "PARAKEET_AUTH_TOKEN"


@dataclass(frozen=True)
class GatewaySettings:
    """Where the orchestrator is, how long a request may take, and the limits the gateway enforces."""

    orchestrator: str = DEFAULT_ORCHESTRATOR
    # The deadline of each Orchestrate call; the orchestrator passes what is left to its backends.
    request_timeout_s: float = 600.0
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    # Empty: the gateway checks no token (the orchestrator may still check the forwarded one).
    auth_token: str = field(default="", repr=False)
    model_id: str = DEFAULT_MODEL_ID
    health_timeout_s: float = 2.0


def read_auth_token(token_file: str | None) -> str:
    """The token from `token_file`, else from PARAKEET_AUTH_TOKEN; the same rule as parakeet-server."""
    if token_file:
        return Path(token_file).read_text().strip()
    return os.environ.get(AUTH_TOKEN_ENV, "").strip()
