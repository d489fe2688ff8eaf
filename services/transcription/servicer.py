"""The TranscriptionService request logic: the one implementation behind gRPC and RunPod."""

from __future__ import annotations

from parakeet.v1 import transcription_pb2, transcription_pb2_grpc
from services.core.context import CallContext
from services.core.errors import Unimplemented


class TranscriptionServicer(transcription_pb2_grpc.TranscriptionServiceServicer):
    """Serves Transcribe; the model work lands with its engine."""

    def Transcribe(
        self, request: transcription_pb2.TranscribeRequest, context: CallContext
    ) -> transcription_pb2.TranscribeResponse:
        raise Unimplemented("Transcribe is not implemented by this server yet")
