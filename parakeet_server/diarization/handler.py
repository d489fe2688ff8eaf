"""RunPod serverless worker for the diarization endpoint: the shared shim over DiarizationServicer.

Run `python -m parakeet_server.diarization.handler` in the worker image; add
`--rp_serve_api --rp_api_port N` for the SDK's local test API. Configured by the same options as
the gRPC server, read from the environment: DIARIZATION_PIPELINE (a Hub id or local directory;
default pyannote/speaker-diarization-3.1; "offline" for the silero-vad+resemblyzer backend, which
needs no token), DIARIZATION_FALLBACK (offline: use that backend, with a warning, when the
pipeline cannot be loaded), DIARIZATION_DEVICE (auto|cpu|cuda),
DIARIZATION_SEGMENTATION_BATCH_SIZE, DIARIZATION_EMBEDDING_BATCH_SIZE, and the token in
HUGGINGFACE_ACCESS_TOKEN (or HF_TOKEN). Weights in RunPod's cached-model store are used without
downloading.

The pipeline is loaded and warmed up before the first job is taken. If it cannot be loaded (no
token, conditions not accepted, no local copy offline) the worker still takes jobs and answers
each with `{"error": ...}` naming what to fix, which a client sees, rather than crash-looping.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from parakeet.v1 import diarization_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.logs import configure_logging
from parakeet_server.core.runpod_shim import ready_or_refusing, serve_jobs
from parakeet_server.core.runtime_hygiene import prepare_process
from parakeet_server.diarization.selection import Diarizer
from parakeet_server.diarization.server import add_arguments, engine_from_args
from parakeet_server.diarization.servicer import DiarizationServicer

Diarize = Callable[[diarization_pb2.DiarizeRequest, CallContext], diarization_pb2.DiarizeResponse]


def engine_from_env(argv: Sequence[str] | None = None) -> Diarizer:
    """The engine the environment (and any known flags in argv) describe; the token is read by the engine."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    args, _runpod_flags = parser.parse_known_args(argv)
    return engine_from_args(args)


def prepare(engine: Diarizer) -> Diarize:
    engine.load()
    engine.warm_up()
    return DiarizationServicer(engine).Diarize


def main() -> None:
    prepare_process()  # before any model library loads: see parakeet_server/core/runtime_hygiene.py
    configure_logging()
    engine = engine_from_env()
    serve_jobs(diarization_pb2.DiarizeRequest, ready_or_refusing(lambda: prepare(engine)))


if __name__ == "__main__":
    main()
