"""RunPod serverless worker for the diarization endpoint: the shared shim over DiarizationServicer.

Run `python -m services.diarization.handler` in the worker image; add
`--rp_serve_api --rp_api_port N` for the SDK's local test API. Configuration comes from the
environment: DIARIZATION_PIPELINE (a Hub id or local directory; default
pyannote/speaker-diarization-3.1), DIARIZATION_DEVICE (auto|cpu|cuda),
DIARIZATION_SEGMENTATION_BATCH_SIZE, DIARIZATION_EMBEDDING_BATCH_SIZE, and the token in
HUGGINGFACE_ACCESS_TOKEN (or HF_TOKEN). Weights in RunPod's cached-model store are used without
downloading.

The pipeline is loaded and warmed up before the first job is taken. If it cannot be loaded (no
token, conditions not accepted, no local copy offline) the worker still takes jobs and answers
each with `{"error": ...}` naming what to fix, which a client sees, rather than crash-looping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from parakeet.v1 import diarization_pb2
from services.core.context import CallContext
from services.core.errors import ServiceError
from services.core.runpod_shim import serve_jobs
from services.diarization.engine import DEFAULT_PIPELINE, DiarizationEngine
from services.diarization.servicer import DiarizationServicer

log = logging.getLogger(__name__)

Diarize = Callable[[diarization_pb2.DiarizeRequest, CallContext], diarization_pb2.DiarizeResponse]


def engine_from_env(env: Mapping[str, str] | None = None) -> DiarizationEngine:
    """The engine the environment describes (the token is read by the engine itself)."""
    env = os.environ if env is None else env
    return DiarizationEngine(
        pipeline=env.get("DIARIZATION_PIPELINE") or DEFAULT_PIPELINE,
        device=env.get("DIARIZATION_DEVICE") or "auto",
        segmentation_batch_size=int(env.get("DIARIZATION_SEGMENTATION_BATCH_SIZE") or 32),
        embedding_batch_size=int(env.get("DIARIZATION_EMBEDDING_BATCH_SIZE") or 32),
    )


def _refuse(error: ServiceError) -> Diarize:
    def diarize(
        request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        raise error

    return diarize


def ready_servicer(engine: DiarizationEngine) -> Diarize:
    """Load and warm up; on a load failure, a servicer that answers every job with that failure."""
    try:
        engine.load()
        engine.warm_up()
    except ServiceError as error:
        log.error("the diarization pipeline is not available: %s", error.message)
        return _refuse(error)
    return DiarizationServicer(engine).Diarize


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_jobs(diarization_pb2.DiarizeRequest, ready_servicer(engine_from_env()))


if __name__ == "__main__":
    main()
