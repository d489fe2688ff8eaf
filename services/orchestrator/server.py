"""Wires the orchestrator servicer and its backends into a HostedService; no request logic here.

`--backend` picks the architecture: `grpc` (the split gRPC services; the default for
`parakeet-server`), `inprocess` (both engines in this process: the single-endpoint worker and
the embedded CLI) or `runpod` (the two split RunPod endpoints; the CPU orchestrator worker).
Every option reads its default from the environment, so the RunPod worker is configured the
same way as the gRPC server.
"""

from __future__ import annotations

import argparse
import os

import grpc

from parakeet.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from services.core.errors import PreconditionFailed
from services.core.grpc_server import HostedService
from services.diarization import server as diarization_server
from services.diarization.servicer import DiarizationServicer
from services.orchestrator.backends import (
    RUNPOD_API_BASE,
    Backends,
    GrpcAddresses,
    GrpcBackends,
    InProcessBackends,
    RunPodBackends,
    RunPodEndpoint,
)
from services.orchestrator.servicer import OrchestratorServicer
from services.transcription import server as transcription_server

SERVICE_NAME: str = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
BACKENDS = ("grpc", "inprocess", "runpod")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this service for `parakeet-server orchestrator` (and `all`)."""
    env = os.environ.get
    group = parser.add_argument_group("orchestrator")
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default=env("ORCHESTRATOR_BACKEND", "grpc"),
        help="where transcription and diarization run (env ORCHESTRATOR_BACKEND; default: %(default)s)",
    )
    group.add_argument(
        "--transcription-address",
        default=env("TRANSCRIPTION_ADDRESS"),
        metavar="HOST:PORT",
        help="TranscriptionService for --backend grpc (default: 127.0.0.1 on the transcription port)",
    )
    group.add_argument(
        "--diarization-address",
        default=env("DIARIZATION_ADDRESS"),
        metavar="HOST:PORT",
        help="DiarizationService for --backend grpc (default: 127.0.0.1 on the diarization port)",
    )
    group.add_argument(
        "--transcription-endpoint-id",
        default=env("TRANSCRIPTION_ENDPOINT_ID", ""),
        help="RunPod endpoint for --backend runpod (env TRANSCRIPTION_ENDPOINT_ID)",
    )
    group.add_argument(
        "--diarization-endpoint-id",
        default=env("DIARIZATION_ENDPOINT_ID", ""),
        help="RunPod endpoint for --backend runpod (env DIARIZATION_ENDPOINT_ID)",
    )
    group.add_argument(
        "--transcription-endpoint-url",
        default=env("TRANSCRIPTION_ENDPOINT_URL", ""),
        help="full base URL of the transcription endpoint, overriding the RunPod API (tests, proxies)",
    )
    group.add_argument(
        "--diarization-endpoint-url",
        default=env("DIARIZATION_ENDPOINT_URL", ""),
        help="full base URL of the diarization endpoint, overriding the RunPod API (tests, proxies)",
    )
    group.add_argument(
        "--runpod-api-base",
        default=env("RUNPOD_API_BASE", RUNPOD_API_BASE),
        help="RunPod serverless API (default: %(default)s); the key comes from env RUNPOD_API_KEY",
    )


def _in_process(args: argparse.Namespace, diarization_wanted: bool) -> InProcessBackends:
    transcription = transcription_server.build_servicer(args)
    diarization_engine = diarization_server.engine_from_args(args)
    diarization = DiarizationServicer(diarization_engine)

    def warm_up() -> None:
        transcription_server.warm_up(transcription)
        if diarization_wanted:
            diarization_engine.load()
            diarization_engine.warm_up()

    return InProcessBackends(transcription.Transcribe, diarization.Diarize, warm_up)


def _runpod(args: argparse.Namespace) -> RunPodBackends:
    api_key = os.environ.get("RUNPOD_API_KEY", "")
    endpoints = {}
    for name in ("transcription", "diarization"):
        endpoint_id = getattr(args, f"{name}_endpoint_id")
        url = getattr(args, f"{name}_endpoint_url") or (
            f"{args.runpod_api_base.rstrip('/')}/{endpoint_id}" if endpoint_id else ""
        )
        if not url:
            raise PreconditionFailed(
                f"set {name.upper()}_ENDPOINT_ID to the RunPod endpoint of the {name} worker"
            )
        endpoints[name] = RunPodEndpoint(endpoint_id=endpoint_id, url=url)
    if not api_key and not (args.transcription_endpoint_url and args.diarization_endpoint_url):
        raise PreconditionFailed("set RUNPOD_API_KEY so the orchestrator can call the RunPod endpoints")
    return RunPodBackends(endpoints["transcription"], endpoints["diarization"], api_key)


def backends_from_args(args: argparse.Namespace, diarization: bool = True) -> Backends:
    """The backends `--backend` names; `diarization=False` skips loading pyannote in process
    (the embedded CLI without --diarize needs no Hugging Face token)."""
    if args.backend == "inprocess":
        return _in_process(args, diarization)
    if args.backend == "runpod":
        return _runpod(args)
    return GrpcBackends(
        GrpcAddresses(
            transcription=args.transcription_address
            or f"127.0.0.1:{getattr(args, 'transcription_port', 50051)}",
            diarization=args.diarization_address or f"127.0.0.1:{getattr(args, 'diarization_port', 50052)}",
        )
    )


def embedded_backends(model: str = "", pipeline: str = "", diarization: bool = True) -> Backends:
    """Both engines in this process, configured as the servers are (defaults and environment),
    with an optional model and pipeline; for the embedded CLI and the evaluation rig."""
    parser = argparse.ArgumentParser(add_help=False)
    for module in (transcription_server, diarization_server):
        module.add_arguments(parser)
    add_arguments(parser)
    argv = ["--backend", "inprocess"]
    if model:
        argv += ["--model", model]
    if pipeline:
        argv += ["--pipeline", pipeline]
    return backends_from_args(parser.parse_args(argv), diarization=diarization)


def hosted_service(servicer: OrchestratorServicer) -> HostedService:
    """The OrchestratorService as a HostedService for ServiceHost."""

    def register(server: grpc.Server) -> None:
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)

    return HostedService(name=SERVICE_NAME, register=register, warm_up=servicer.backends.warm_up)


def hosted_service_from_args(args: argparse.Namespace) -> HostedService:
    return hosted_service(OrchestratorServicer(backends_from_args(args)))
