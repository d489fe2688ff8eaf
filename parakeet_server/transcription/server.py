"""Wires the transcription engine, runner and servicer into a HostedService; no request logic here.

Options read their defaults from the environment (TRANSCRIPTION_MODEL, ...) so the gRPC server
and the RunPod worker configure the engine the same way.
"""

from __future__ import annotations

import argparse
import os

import grpc

from parakeet.v1 import transcription_pb2, transcription_pb2_grpc
from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.transcription.engine import DEFAULT_MODEL, TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer

SERVICE_NAME: str = transcription_pb2.DESCRIPTOR.services_by_name["TranscriptionService"].full_name


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this service for `parakeet-server transcription` (and `all`)."""
    group = parser.add_argument_group("transcription")
    group.add_argument(
        "--model",
        default=_env("TRANSCRIPTION_MODEL", DEFAULT_MODEL),
        help="a .nemo file, a directory holding one, or a Hugging Face id; local caches are searched first "
        "(env TRANSCRIPTION_MODEL; default: %(default)s)",
    )
    group.add_argument(
        "--device",
        default=_env("TRANSCRIPTION_DEVICE", "auto"),
        help="auto (GPU when present), cpu, cuda or cuda:N (env TRANSCRIPTION_DEVICE; default: %(default)s)",
    )
    group.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default=_env("TRANSCRIPTION_PRECISION", "auto"),
        help="auto: bf16 on GPUs that support it, else fp32 (default: %(default)s)",
    )
    group.add_argument(
        "--max-batch-size",
        type=int,
        default=int(_env("TRANSCRIPTION_MAX_BATCH_SIZE", "16")),
        help="requests sharing one forward pass (default: %(default)s)",
    )
    group.add_argument(
        "--max-batch-wait-ms",
        type=float,
        default=float(_env("TRANSCRIPTION_MAX_BATCH_WAIT_MS", "5")),
        help="how long a request waits for others to share its batch (default: %(default)s)",
    )
    group.add_argument(
        "--window-seconds",
        type=float,
        default=float(_env("TRANSCRIPTION_WINDOW_S", "120")),
        metavar="SECONDS",
        help="recordings longer than this are transcribed in overlapping windows this long, so peak memory "
        "depends on the window, not on the recording (env TRANSCRIPTION_WINDOW_S; default: %(default)s)",
    )
    group.add_argument(
        "--window-overlap",
        type=float,
        default=float(_env("TRANSCRIPTION_WINDOW_OVERLAP_S", "16")),
        metavar="SECONDS",
        help="overlap of neighbouring windows; words are handed over in its middle "
        "(env TRANSCRIPTION_WINDOW_OVERLAP_S; default: %(default)s)",
    )
    group.add_argument(
        "--window-batch-size",
        type=int,
        default=int(_env("TRANSCRIPTION_WINDOW_BATCH_SIZE", "0")) or None,
        help="windows per forward pass, which also caps the audio of one pass of short recordings "
        "(env TRANSCRIPTION_WINDOW_BATCH_SIZE; default: 1 on CPU, 4 on a GPU)",
    )
    group.add_argument(
        "--max-audio-seconds",
        type=float,
        default=float(_env("MAX_AUDIO_SECONDS", str(AudioLimits.max_duration_s))),
        help="longest recording accepted (env MAX_AUDIO_SECONDS; default: %(default)s)",
    )


def build_servicer(args: argparse.Namespace) -> TranscriptionServicer:
    """An engine (not loaded yet), its micro-batcher and the servicer, from parsed options."""
    engine = TranscriptionEngine(
        TranscriptionEngineConfig(
            model=args.model,
            device=args.device,
            precision=args.precision,
            window_s=args.window_seconds,
            window_overlap_s=args.window_overlap,
            window_batch_size=args.window_batch_size,
        )
    )
    runner = TranscriptionRunner(
        engine, BatchPolicy(max_batch_size=args.max_batch_size, max_wait_ms=args.max_batch_wait_ms)
    )
    return TranscriptionServicer(runner, AudioLimits(max_duration_s=args.max_audio_seconds))


def warm_up(servicer: TranscriptionServicer) -> None:
    """Load the model and run one pass; health says SERVING only after this returns."""
    engine = servicer.runner.engine
    if isinstance(engine, TranscriptionEngine) and not engine.loaded:
        engine.load()
        engine.warm_up()


def hosted_service(servicer: TranscriptionServicer) -> HostedService:
    """The TranscriptionService as a HostedService for ServiceHost."""

    def register(server: grpc.Server) -> None:
        transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(servicer, server)

    return HostedService(name=SERVICE_NAME, register=register, warm_up=lambda: warm_up(servicer))


def hosted_service_from_args(args: argparse.Namespace) -> HostedService:
    return hosted_service(build_servicer(args))
