"""Wires DiarizationServicer into a gRPC server; no request logic lives here.

The HostedService's warm-up loads the pipeline and runs one pass, so health reports SERVING
(and RPCs are let through) only once a request can be answered at full speed; a load failure
(missing token, gated repo, no local copy offline) keeps it NOT_SERVING and answers every call
with FAILED_PRECONDITION naming what to fix.
"""

from __future__ import annotations

import argparse
import os

import grpc

from parakeet.v1 import diarization_pb2, diarization_pb2_grpc
from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.diarization.offline_engine import OFFLINE_PIPELINE
from parakeet_server.diarization.pyannote_engine import DEFAULT_PIPELINE, DEVICES
from parakeet_server.diarization.selection import FALLBACKS, Diarizer, build_engine
from parakeet_server.diarization.servicer import DiarizationServicer

SERVICE_NAME: str = diarization_pb2.DESCRIPTOR.services_by_name["DiarizationService"].full_name


def hosted_service(engine: Diarizer | None = None, limits: AudioLimits | None = None) -> HostedService:
    """The DiarizationService over `engine` (default: speaker-diarization-3.1) for ServiceHost."""
    engine = engine or build_engine()
    servicer = DiarizationServicer(engine, limits)

    def register(server: grpc.Server) -> None:
        diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(servicer, server)

    def warm_up() -> None:
        engine.load()
        engine.warm_up()

    return HostedService(name=SERVICE_NAME, register=register, warm_up=warm_up)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this service for `parakeet-server diarization` (and `all`).

    Names are unique across services because `all` puts every service's options in one parser
    (the transcription service owns --model and --device). Defaults come from the environment
    (DIARIZATION_PIPELINE, DIARIZATION_DEVICE, DIARIZATION_FALLBACK, ...) so the RunPod worker is
    configured the same way.
    """
    group = parser.add_argument_group("diarization")
    group.add_argument(
        "--pipeline",
        dest="diarization_pipeline",
        default=os.environ.get("DIARIZATION_PIPELINE") or DEFAULT_PIPELINE,
        metavar="PATH_OR_HF_ID",
        help="pyannote pipeline: a local directory holding config.yaml, or a Hugging Face id such as "
        "pyannote/speaker-diarization-community-1 (default: %(default)s); gated repos need "
        f"HUGGINGFACE_ACCESS_TOKEN unless already in the local cache. '{OFFLINE_PIPELINE}' is the "
        "offline silero-vad+resemblyzer backend: no token or download, lower speaker accuracy",
    )
    fallback = os.environ.get("DIARIZATION_FALLBACK") or "none"
    if fallback not in FALLBACKS:
        parser.error(f"DIARIZATION_FALLBACK must be one of {', '.join(FALLBACKS)}, not {fallback!r}")
    group.add_argument(
        "--fallback-offline",
        dest="diarization_fallback",
        action="store_const",
        const=OFFLINE_PIPELINE,
        default=fallback,
        help="when the pyannote pipeline cannot be loaded (weights or token missing), serve with the "
        "offline backend instead, logging a warning, rather than refuse every call with "
        "FAILED_PRECONDITION (env DIARIZATION_FALLBACK=offline; default: refuse)",
    )
    group.add_argument(
        "--diarization-device",
        dest="diarization_device",
        choices=DEVICES,
        default=os.environ.get("DIARIZATION_DEVICE") or "auto",
        help="where the pipeline runs; auto picks the GPU when there is one (default: %(default)s)",
    )
    group.add_argument(
        "--segmentation-batch-size",
        dest="diarization_segmentation_batch_size",
        type=_positive,
        default=int(os.environ.get("DIARIZATION_SEGMENTATION_BATCH_SIZE") or 32),
        metavar="N",
        help="segmentation windows per forward pass (default: %(default)s)",
    )
    group.add_argument(
        "--embedding-batch-size",
        dest="diarization_embedding_batch_size",
        type=_positive,
        default=int(os.environ.get("DIARIZATION_EMBEDDING_BATCH_SIZE") or 32),
        metavar="N",
        help="speaker embeddings per forward pass (default: %(default)s)",
    )


def engine_from_args(args: argparse.Namespace) -> Diarizer:
    return build_engine(
        pipeline=args.diarization_pipeline,
        device=args.diarization_device,
        segmentation_batch_size=args.diarization_segmentation_batch_size,
        embedding_batch_size=args.diarization_embedding_batch_size,
        fallback=args.diarization_fallback,
    )


def hosted_service_from_args(args: argparse.Namespace) -> HostedService:
    return hosted_service(engine_from_args(args))
