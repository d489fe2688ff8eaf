"""A live stack for gateway tests: the real engines behind an in-process orchestrator, the gateway on uvicorn.

The trained tiny TDT (eval/assets/tiny_tdt_espeak.nemo) and the offline diarization backend are
loaded once per process (`engines()`); `live_stack()` hosts an OrchestratorServicer over them on
a loopback gRPC port and serves the gateway in front of it, so WebSocket, SSE and the web page
are tested against what production runs, only smaller. Import the functions; they are not fixtures.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from parakeet.v1 import orchestrator_pb2_grpc
from parakeet_server.core.grpc_server import HostedService, ServerOptions, ServiceHost
from parakeet_server.core.live import LiveLimits
from parakeet_server.diarization import wiring as diarization_wiring
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.config import GatewayConfig
from parakeet_server.gateway.server import uvicorn_options
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription import wiring as transcription_wiring
from parakeet_server.transcription.config import TranscriptionConfig
from parakeet_server.transcription.engine import TranscriptionEngineConfig
from tests.gateway.conftest import serve_http
from tests.support.servers import REPO_ROOT, wait_for_health

MODEL = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"
ORCHESTRATOR = "parakeet.v1.OrchestratorService"
RATE = 16_000


@functools.cache
def engines() -> tuple[Any, Any]:
    """The transcription servicer (with its live sessions) and the diarization servicer, loaded once."""
    transcription = transcription_wiring.build_servicer(
        TranscriptionConfig(engine=TranscriptionEngineConfig(model=str(MODEL), device="cpu"))
    )
    transcription_wiring.warm_up(transcription)
    engine = diarization_wiring.engine_for(DiarizationConfig(pipeline="offline", device="cpu"))
    diarization_wiring.warm_up(engine)
    return transcription, diarization_wiring.build_servicer(engine, DiarizationConfig().limits)


def orchestrator_servicer(live_limits: LiveLimits | None = None) -> OrchestratorServicer:
    """An orchestrator running both engines in process (batch and live)."""
    transcription, diarization = engines()
    backends = InProcessBackends(
        transcription.Transcribe,
        diarization.Diarize,
        lambda: None,
        stream_transcription=transcription.live.open_session,
        stream_diarization=diarization.open_session,
    )
    return OrchestratorServicer(backends, live_limits=live_limits)


@dataclass
class LiveStack:
    """The gateway's base URL and the orchestrator host behind it (its `live_streams` count the streams)."""

    url: str
    host: ServiceHost
    settings: GatewayConfig

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")


@contextlib.contextmanager
def live_stack(
    settings: GatewayConfig | None = None,
    live_limits: LiveLimits | None = None,
    servicer: OrchestratorServicer | None = None,
    **host_options: Any,
) -> Iterator[LiveStack]:
    """Orchestrator host + gateway on loopback; `host_options` go to ServerOptions (auth_token,
    max_live_streams, ...); `settings` to the gateway (its orchestrator address is filled in)."""
    servicer = servicer or orchestrator_servicer(live_limits)
    host = ServiceHost(
        [
            HostedService(
                ORCHESTRATOR,
                lambda server: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
                    servicer, server
                ),
            )
        ],
        ServerOptions(host="127.0.0.1", port=0, grace_s=1.0, **host_options),
    )
    host.start()
    try:
        assert host.wait_until_warm(60), "the orchestrator did not warm up"
        wait_for_health(host.address, ORCHESTRATOR)
        settings = replace(settings or GatewayConfig(request_timeout_s=60.0), orchestrator=host.address)
        with serve_http(create_app(settings), **uvicorn_options(settings)) as url:
            yield LiveStack(url, host, settings)
    finally:
        host.drain(0.5)


def pcm16(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as s16le bytes (what the realtime protocol's pcm16 carries)."""
    data: bytes = (np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes()
    return data
