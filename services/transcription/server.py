"""Wires TranscriptionServicer into a gRPC server; no request logic lives here."""

from __future__ import annotations

import argparse

import grpc

from parakeet.v1 import transcription_pb2, transcription_pb2_grpc
from services.core.grpc_server import HostedService
from services.transcription.servicer import TranscriptionServicer

SERVICE_NAME: str = transcription_pb2.DESCRIPTOR.services_by_name["TranscriptionService"].full_name


def hosted_service(servicer: TranscriptionServicer | None = None) -> HostedService:
    """The TranscriptionService as a HostedService for ServiceHost."""
    instance = servicer or TranscriptionServicer()

    def register(server: grpc.Server) -> None:
        transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(instance, server)

    return HostedService(name=SERVICE_NAME, register=register)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this service for `parakeet-server transcription` (and `all`)."""


def hosted_service_from_args(args: argparse.Namespace) -> HostedService:
    return hosted_service()
