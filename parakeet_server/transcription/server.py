"""The TranscriptionService as a HostedService for the gRPC host; no request logic here.

The servicer comes from `transcription.wiring` (config -> servicer), which the RunPod worker
uses too; this module only adds what a gRPC server needs.
"""

from __future__ import annotations

import grpc

from parakeet.v1 import transcription_pb2, transcription_pb2_grpc
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.transcription.servicer import TranscriptionServicer
from parakeet_server.transcription.wiring import warm_up

SERVICE_NAME: str = transcription_pb2.DESCRIPTOR.services_by_name["TranscriptionService"].full_name


def hosted_service(servicer: TranscriptionServicer) -> HostedService:
    """The servicer, registered under its name, warmed up (model load and one pass) before SERVING."""

    def register(server: grpc.Server) -> None:
        transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(servicer, server)

    return HostedService(name=SERVICE_NAME, register=register, warm_up=lambda: warm_up(servicer))
