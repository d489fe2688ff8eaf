"""Wires the orchestrator servicer and its backends into a HostedService; no request logic here.

`--backend` picks the architecture: `grpc` (the split gRPC services; the default for
`parakeet-server`), `inprocess` (both engines in this process: the single-endpoint worker and
the embedded CLI) or `runpod` (the two split RunPod endpoints; the CPU orchestrator worker).
Every option reads its default from the environment, so the RunPod worker is configured the
same way as the gRPC server.

With `--backend grpc` the orchestrator sends its backends a bearer token
(`--backend-auth-token-file`, else env PARAKEET_BACKEND_AUTH_TOKEN, else its own token) and
speaks TLS to them when given a CA (`--backend-tls-ca`; `parakeet-server all --tls-cert` uses
that certificate); its health follows theirs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc

from parakeet.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.diarization import server as diarization_server
from parakeet_server.diarization.servicer import DiarizationServicer
from parakeet_server.orchestrator.backends import (
    BACKEND_AUTH_TOKEN_ENV,
    BACKEND_AUTH_TOKEN_FLAG,
    RUNPOD_API_BASE,
    Backends,
    GrpcAddresses,
    GrpcBackends,
    InProcessBackends,
    ReportsReadiness,
    RunPodBackends,
    RunPodEndpoint,
)
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription import server as transcription_server

SERVICE_NAME: str = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
BACKENDS = ("grpc", "inprocess", "runpod")
OWN_AUTH_TOKEN_ENV = "PARAKEET_AUTH_TOKEN"


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
        BACKEND_AUTH_TOKEN_FLAG,
        default=env(f"{BACKEND_AUTH_TOKEN_ENV}_FILE", ""),
        metavar="FILE",
        help="file holding the bearer token sent to the --backend grpc servers (env "
        f"{BACKEND_AUTH_TOKEN_ENV}_FILE; else env {BACKEND_AUTH_TOKEN_ENV}; else this server's own "
        "token, from --auth-token-file or PARAKEET_AUTH_TOKEN, so one shared token configures a stack)",
    )
    group.add_argument(
        "--backend-tls-ca",
        default=env("PARAKEET_BACKEND_TLS_CA", ""),
        metavar="PEM",
        help="call the --backend grpc servers over TLS, trusting these certificates (env "
        "PARAKEET_BACKEND_TLS_CA; `all` with --tls-cert uses that certificate; default: plaintext)",
    )
    group.add_argument(
        "--backend-tls-server-name",
        default=env("PARAKEET_BACKEND_TLS_SERVER_NAME", ""),
        metavar="NAME",
        help="the name the backends' TLS certificates must carry, instead of the host in their "
        "addresses (env PARAKEET_BACKEND_TLS_SERVER_NAME; e.g. localhost for `all` on 127.0.0.1)",
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


def backend_auth_token(args: argparse.Namespace) -> str:
    """The token for the gRPC backends: --backend-auth-token-file, else PARAKEET_BACKEND_AUTH_TOKEN,
    else the orchestrator's own (--auth-token-file, else PARAKEET_AUTH_TOKEN); never a command-line
    value, which ps would show."""
    token_file = getattr(args, "backend_auth_token_file", "")
    if token_file:
        return Path(token_file).read_text().strip()
    token = os.environ.get(BACKEND_AUTH_TOKEN_ENV, "").strip()
    if token:
        return token
    own_file = getattr(args, "auth_token_file", None)
    if own_file:
        return Path(own_file).read_text().strip()
    return os.environ.get(OWN_AUTH_TOKEN_ENV, "").strip()


def _grpc(args: argparse.Namespace) -> GrpcBackends:
    ca = getattr(args, "backend_tls_ca", "")
    return GrpcBackends(
        GrpcAddresses(
            transcription=args.transcription_address
            or f"127.0.0.1:{getattr(args, 'transcription_port', 50051)}",
            diarization=args.diarization_address or f"127.0.0.1:{getattr(args, 'diarization_port', 50052)}",
        ),
        auth_token=backend_auth_token(args),
        root_certificates=Path(ca).read_bytes() if ca else None,
        tls_server_name=getattr(args, "backend_tls_server_name", ""),
    )


def backends_from_args(args: argparse.Namespace, diarization: bool = True) -> Backends:
    """The backends `--backend` names; `diarization=False` skips loading pyannote in process
    (the embedded CLI without --diarize needs no Hugging Face token)."""
    if args.backend == "inprocess":
        return _in_process(args, diarization)
    if args.backend == "runpod":
        return _runpod(args)
    return _grpc(args)


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


def hosted_service_from_args(args: argparse.Namespace) -> HostedService:
    return hosted_service(OrchestratorServicer(backends_from_args(args)))
