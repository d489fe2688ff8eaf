"""Scripted transcription and diarization servers for the orchestrator's gRPC backend tests.

The servicers return fixed messages (tests/orchestrator/test_servicer.py's); what is under test is
the orchestrator's transport: tokens, TLS, error mapping and health.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from parakeet.v1 import (
    audio_pb2,
    diarization_pb2,
    diarization_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    transcription_pb2,
    transcription_pb2_grpc,
)
from parakeet_server.core.context import CallContext
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.diarization.server import SERVICE_NAME as DIARIZATION
from parakeet_server.transcription.server import SERVICE_NAME as TRANSCRIPTION
from tests.orchestrator.test_servicer import diarization, transcript

ORCHESTRATOR = "parakeet.v1.OrchestratorService"
AUDIO = audio_pb2.Audio(uri="https://example.com/call.wav")


class ScriptedTranscriber(transcription_pb2_grpc.TranscriptionServiceServicer):
    def Transcribe(
        self, request: transcription_pb2.TranscribeRequest, context: CallContext
    ) -> transcription_pb2.TranscribeResponse:
        return transcript()


class ScriptedDiarizer(diarization_pb2_grpc.DiarizationServiceServicer):
    def Diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        return diarization()


def transcription_service(warm_up: Callable[[], object] | None = None) -> HostedService:
    servicer = ScriptedTranscriber()
    return HostedService(
        name=TRANSCRIPTION,
        register=lambda server: transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(
            servicer, server
        ),
        warm_up=warm_up or (lambda: None),
    )


def diarization_service() -> HostedService:
    servicer = ScriptedDiarizer()
    return HostedService(
        name=DIARIZATION,
        register=lambda server: diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(
            servicer, server
        ),
    )


def held_warm_up() -> tuple[threading.Event, Callable[[], object]]:
    """A warm-up that returns once the event is set (the model 'loads' when the test says so)."""
    release = threading.Event()
    return release, lambda: release.wait(30)


def orchestrate(
    address: str,
    diarize: bool = True,
    token: str = "",
    credentials: grpc.ChannelCredentials | None = None,
    timeout: float = 10.0,
) -> orchestrator_pb2.OrchestrateResponse:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    channel = (
        grpc.insecure_channel(address) if credentials is None else grpc.secure_channel(address, credentials)
    )
    with channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        response: orchestrator_pb2.OrchestrateResponse = stub.Orchestrate(
            orchestrator_pb2.OrchestrateRequest(audio=AUDIO, diarize=diarize, word_timestamps=True),
            timeout=timeout,
            metadata=metadata,
        )
    return response
