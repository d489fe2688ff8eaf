"""Wires OrchestratorServicer into a gRPC server; no request logic lives here."""

from __future__ import annotations

import argparse

import grpc

from parakeet.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from services.core.grpc_server import HostedService
from services.orchestrator.servicer import OrchestratorServicer

SERVICE_NAME: str = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


def hosted_service(servicer: OrchestratorServicer | None = None) -> HostedService:
    """The OrchestratorService as a HostedService for ServiceHost."""
    instance = servicer or OrchestratorServicer()

    def register(server: grpc.Server) -> None:
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(instance, server)

    return HostedService(name=SERVICE_NAME, register=register)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this service for `parakeet-server orchestrator` (and `all`)."""


def hosted_service_from_args(args: argparse.Namespace) -> HostedService:
    return hosted_service()
