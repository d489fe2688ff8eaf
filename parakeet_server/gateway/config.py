"""What a gateway needs to know, read once at start-up; the token never comes from the command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from parakeet_server.core.grpc_server import DEFAULT_MAX_MESSAGE_BYTES
from parakeet_server.core.settings import Env, auth_token, real, whole

# The orchestrator accepts 64 MiB messages by default; an upload of at most 63 MiB leaves room for
# the rest of the OrchestrateRequest, so a file the gateway accepts is never refused for its size.
DEFAULT_MAX_UPLOAD_BYTES = DEFAULT_MAX_MESSAGE_BYTES - 1024 * 1024
DEFAULT_MODEL_ID = "parakeet-tdt-0.6b-v2"
DEFAULT_ORCHESTRATOR = "127.0.0.1:50053"
DEFAULT_PORT = 8000
MIB = 1024 * 1024


@dataclass(frozen=True)
class GatewayConfig:
    """Where to listen, where the orchestrator is, how long a request may take, and the limits."""

    orchestrator: str = DEFAULT_ORCHESTRATOR
    # The deadline of each Orchestrate call; the orchestrator passes what is left to its backends.
    request_timeout_s: float = 600.0
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    # Empty: the gateway checks no token (the orchestrator may still check the forwarded one).
    auth_token: str = field(default="", repr=False)
    model_id: str = DEFAULT_MODEL_ID
    health_timeout_s: float = 2.0
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    # Seconds in-flight requests get on SIGTERM.
    grace_s: float = 30.0
    # Realtime WebSocket: the largest client message (base64 audio included; a larger one gets an
    # error event and close 4413; uvicorn itself cuts a frame over twice this with 1009, so one is
    # never read whole), how many audio messages wait for the orchestrator before the socket is no
    # longer read (back-pressure), and how long a socket may stay open before its first audio.
    ws_max_message_bytes: int = 4 * MIB
    ws_queue_messages: int = 16
    ws_first_audio_timeout_s: float = 30.0
    # permessage-deflate: off, so back-pressure holds in audio bytes. With it, a socket's bytes are
    # compressed ones and silence compresses ~500:1: a client pushed 196 MB of silent appends in 1 s
    # into kernel buffers that hold 10 MB of real audio, and each read inflated up to 66 messages at
    # once. Audio (base64 PCM) saves at most ~25 % with it.
    ws_per_message_deflate: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> GatewayConfig:
        """GATEWAY_PORT, ORCHESTRATOR_ADDRESS, GATEWAY_REQUEST_TIMEOUT_S, GATEWAY_MAX_UPLOAD_MB,
        GATEWAY_MODEL_ID, GATEWAY_WS_MAX_MESSAGE_MB, and the token (PARAKEET_AUTH_TOKEN_FILE, else PARAKEET_AUTH_TOKEN)."""
        env = Env(environ)
        default = cls()
        upload_mb = env.get("GATEWAY_MAX_UPLOAD_MB", default.max_upload_bytes / MIB, real(above=0))
        ws_message_mb = env.get(
            "GATEWAY_WS_MAX_MESSAGE_MB", default.ws_max_message_bytes / MIB, real(above=0)
        )
        return cls(
            orchestrator=env.text("ORCHESTRATOR_ADDRESS", default.orchestrator),
            request_timeout_s=env.get("GATEWAY_REQUEST_TIMEOUT_S", default.request_timeout_s, real(above=0)),
            max_upload_bytes=int(upload_mb * MIB),
            auth_token=auth_token(env),
            model_id=env.text("GATEWAY_MODEL_ID", default.model_id),
            port=env.get("GATEWAY_PORT", default.port, whole(minimum=0, maximum=65535)),
            ws_max_message_bytes=int(ws_message_mb * MIB),
        )
