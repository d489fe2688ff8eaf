"""The DiarizationService request logic: the one implementation behind gRPC and RunPod."""

from __future__ import annotations

from parakeet.v1 import diarization_pb2, diarization_pb2_grpc
from services.core.context import CallContext
from services.core.errors import Unimplemented


class DiarizationServicer(diarization_pb2_grpc.DiarizationServiceServicer):
    """Serves Diarize; the model work lands with its engine."""

    def Diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        raise Unimplemented("Diarize is not implemented by this server yet")
