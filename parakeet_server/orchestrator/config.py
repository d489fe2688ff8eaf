"""What an orchestrator is built from: where its two halves run, and how to reach them.

`backend` picks the architecture: "grpc" (the split gRPC services; the default for
`parakeet-server`), "inprocess" (both engines in this process, built from `transcription` and
`diarization`: the single-endpoint worker and the embedded CLI) or "runpod" (the two split RunPod
endpoints; the default of the CPU orchestrator worker).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from parakeet.runpod import API_KEY_ENV, RUNPOD_API_BASE
from parakeet_server.core.live import LiveLimits
from parakeet_server.core.settings import AUTH_TOKEN_ENV, Env, live_limits, one_of
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.orchestrator.backends import BACKEND_AUTH_TOKEN_ENV
from parakeet_server.transcription.config import TranscriptionConfig

BACKENDS = ("grpc", "inprocess", "runpod")
DEFAULT_TRANSCRIPTION_PORT = 50051
DEFAULT_DIARIZATION_PORT = 50052


def backend_auth_token(env: Env, own_token: str, token_file: str = "") -> str:
    """The bearer token sent to gRPC backends: `token_file` (--backend-auth-token-file), else the
    file PARAKEET_BACKEND_AUTH_TOKEN_FILE names, else PARAKEET_BACKEND_AUTH_TOKEN, else the
    orchestrator's own token, so one shared token configures a whole stack."""
    return env.secret(f"{BACKEND_AUTH_TOKEN_ENV}_FILE", BACKEND_AUTH_TOKEN_ENV, token_file) or own_token


@dataclass(frozen=True)
class OrchestratorConfig:
    """The backends' architecture and addresses; tokens and keys are kept out of repr."""

    backend: str = "grpc"
    # --backend grpc: the two services, and how to call them (TLS when given a CA).
    transcription_address: str = f"127.0.0.1:{DEFAULT_TRANSCRIPTION_PORT}"
    diarization_address: str = f"127.0.0.1:{DEFAULT_DIARIZATION_PORT}"
    backend_auth_token: str = field(default="", repr=False)
    backend_tls_ca: str = ""
    backend_tls_server_name: str = ""
    # --backend runpod: the two endpoints (an explicit URL overrides api base + id) and the key.
    transcription_endpoint_id: str = ""
    diarization_endpoint_id: str = ""
    transcription_endpoint_url: str = ""
    diarization_endpoint_url: str = ""
    runpod_api_base: str = RUNPOD_API_BASE
    runpod_api_key: str = field(default="", repr=False)
    # --backend inprocess: the engines this process runs.
    transcription: TranscriptionConfig = field(default_factory=TranscriptionConfig)
    diarization: DiarizationConfig = field(default_factory=DiarizationConfig)
    # What one StreamingOrchestrate stream may do (idle timeout, maximum duration).
    live_limits: LiveLimits = field(default_factory=LiveLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, backend: str = "grpc") -> OrchestratorConfig:
        """ORCHESTRATOR_BACKEND (else `backend`), the addresses, endpoints, tokens, and the
        in-process engines' own variables (TRANSCRIPTION_*, DIARIZATION_*, MAX_AUDIO_SECONDS)."""
        env = Env(environ)
        default = cls()
        return cls(
            backend=env.get("ORCHESTRATOR_BACKEND", backend, one_of(BACKENDS)),
            transcription_address=env.text("TRANSCRIPTION_ADDRESS", default.transcription_address),
            diarization_address=env.text("DIARIZATION_ADDRESS", default.diarization_address),
            backend_auth_token=backend_auth_token(env, own_token=env.text(AUTH_TOKEN_ENV)),
            backend_tls_ca=env.text("PARAKEET_BACKEND_TLS_CA"),
            backend_tls_server_name=env.text("PARAKEET_BACKEND_TLS_SERVER_NAME"),
            transcription_endpoint_id=env.text("TRANSCRIPTION_ENDPOINT_ID"),
            diarization_endpoint_id=env.text("DIARIZATION_ENDPOINT_ID"),
            transcription_endpoint_url=env.text("TRANSCRIPTION_ENDPOINT_URL"),
            diarization_endpoint_url=env.text("DIARIZATION_ENDPOINT_URL"),
            runpod_api_base=env.text("RUNPOD_API_BASE", default.runpod_api_base),
            runpod_api_key=env.text(API_KEY_ENV),
            transcription=TranscriptionConfig.from_env(environ),
            diarization=DiarizationConfig.from_env(environ),
            live_limits=live_limits(env),
        )
