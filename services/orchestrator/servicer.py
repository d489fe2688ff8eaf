"""The OrchestratorService request logic: the one implementation behind gRPC and RunPod."""

from __future__ import annotations

from parakeet.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from services.core.context import CallContext
from services.core.errors import Unimplemented


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Serves Orchestrate; the model work lands with its engine."""

    def Orchestrate(
        self, request: orchestrator_pb2.OrchestrateRequest, context: CallContext
    ) -> orchestrator_pb2.OrchestrateResponse:
        raise Unimplemented("Orchestrate is not implemented by this server yet")
