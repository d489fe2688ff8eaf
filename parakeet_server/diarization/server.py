"""The DiarizationService as a HostedService for the gRPC host; no request logic here.

The warm-up loads the pipeline and runs one pass, so health reports SERVING (and RPCs are let
through) only once a request can be answered at full speed; a load failure (missing token,
gated repo, no local copy offline) keeps it NOT_SERVING and answers every call with
FAILED_PRECONDITION naming what to fix.
"""

from __future__ import annotations

import grpc

from parakeet.v1 import diarization_pb2, diarization_pb2_grpc
from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.core.live import LiveLimits
from parakeet_server.diarization.selection import Diarizer
from parakeet_server.diarization.wiring import build_servicer, warm_up

SERVICE_NAME: str = diarization_pb2.DESCRIPTOR.services_by_name["DiarizationService"].full_name


def hosted_service(
    engine: Diarizer, limits: AudioLimits | None = None, live_limits: LiveLimits | None = None
) -> HostedService:
    """The DiarizationService over `engine` (see `wiring.engine_for`), enforcing `limits` (and
    `live_limits` on StreamingDiarize)."""
    servicer = build_servicer(engine, limits or AudioLimits(), live_limits)

    def register(server: grpc.Server) -> None:
        diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(servicer, server)

    return HostedService(name=SERVICE_NAME, register=register, warm_up=lambda: warm_up(engine))
