"""Wires DiarizationServicer into a gRPC server; no request logic lives here."""

from __future__ import annotations

import argparse

import grpc

from parakeet.v1 import diarization_pb2, diarization_pb2_grpc
from services.core.grpc_server import HostedService
from services.diarization.servicer import DiarizationServicer

SERVICE_NAME: str = diarization_pb2.DESCRIPTOR.services_by_name["DiarizationService"].full_name


def hosted_service(servicer: DiarizationServicer | None = None) -> HostedService:
    """The DiarizationService as a HostedService for ServiceHost."""
    instance = servicer or DiarizationServicer()

    def register(server: grpc.Server) -> None:
        diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(instance, server)

    return HostedService(name=SERVICE_NAME, register=register)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this service for `parakeet-server diarization` (and `all`)."""


def hosted_service_from_args(args: argparse.Namespace) -> HostedService:
    return hosted_service()
