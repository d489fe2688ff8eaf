"""The OrchestratorService as a HostedService for the gRPC host; no request logic here.

The servicer and its backends come from `orchestrator.wiring` (config -> backends -> servicer),
which the RunPod worker and the embedded CLI use too.
"""

from __future__ import annotations

import grpc

from parakeet.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.orchestrator.backends import ReportsReadiness
from parakeet_server.orchestrator.servicer import OrchestratorServicer

SERVICE_NAME: str = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


def hosted_service(servicer: OrchestratorServicer, probe_interval_s: float = 1.0) -> HostedService:
    """The OrchestratorService as a HostedService for ServiceHost.

    Its health follows its backends': in process, their warm-up is its own; over gRPC their
    health is polled every `probe_interval_s` seconds (SERVING only while both are); RunPod
    scales its workers itself, so there is nothing to wait for."""

    def register(server: grpc.Server) -> None:
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)

    backends = servicer.backends
    return HostedService(
        name=SERVICE_NAME,
        register=register,
        warm_up=backends.warm_up,
        probe=backends.not_ready if isinstance(backends, ReportsReadiness) else None,
        probe_interval_s=probe_interval_s,
    )
