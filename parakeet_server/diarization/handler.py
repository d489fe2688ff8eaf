"""RunPod serverless worker for the diarization endpoint: the shared shim over DiarizationServicer.

Run `python -m parakeet_server.diarization.handler` in the worker image; add
`--rp_serve_api --rp_api_port N` for the SDK's local test API. Configured from the environment
(DiarizationConfig.from_env), as the gRPC server is from its flags: DIARIZATION_PIPELINE (a Hub
id or local directory; default pyannote/speaker-diarization-3.1; "offline" for the
silero-vad+resemblyzer backend, which needs no token), DIARIZATION_FALLBACK (offline: use that
backend, with a warning, when the pipeline cannot be loaded), DIARIZATION_DEVICE
(auto|cpu|cuda|cuda:N), DIARIZATION_SEGMENTATION_BATCH_SIZE, DIARIZATION_EMBEDDING_BATCH_SIZE,
MAX_AUDIO_SECONDS, and the token in HUGGINGFACE_ACCESS_TOKEN (or HF_TOKEN). Weights in RunPod's
cached-model store are used without downloading.

Besides Diarize jobs it runs enroll jobs, `{"input": {"task": "enroll", "audio": ..., "name":
"Alice"}}`, answered with the voiceprint file `parakeet enroll` writes (made by this worker's
engine, so it matches in this endpoint's Diarize jobs' `known_speakers`).

The pipeline is loaded and warmed up before the first job is taken. If it cannot be loaded (no
token, conditions not accepted, no local copy offline, a bad variable) the worker still takes
jobs and answers each with `{"error": ...}` naming what to fix, which a client sees, rather than
crash-looping.
"""

from __future__ import annotations

from collections.abc import Callable

from parakeet.runpod import ENROLL_TASK
from parakeet.v1 import diarization_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.runpod_shim import (
    DEFAULT_TASK,
    Task,
    Tasks,
    enroll_task,
    run_tasks_worker,
)
from parakeet_server.core.settings import worker_config
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.diarization.wiring import build_servicer, engine_for, warm_up

Diarize = Callable[[diarization_pb2.DiarizeRequest, CallContext], diarization_pb2.DiarizeResponse]


def prepare(config: DiarizationConfig) -> Diarize:
    """The servicer the config describes, its pipeline loaded and warmed up."""
    engine = engine_for(config)
    warm_up(engine)
    return build_servicer(engine, config.limits).Diarize


def prepare_tasks(config: DiarizationConfig) -> Tasks:
    """The worker's jobs over one loaded engine: Diarize (no `task`) and enroll."""
    engine = engine_for(config)
    warm_up(engine)
    servicer = build_servicer(engine, config.limits)
    return {
        DEFAULT_TASK: Task(diarization_pb2.DiarizeRequest, servicer.Diarize),
        ENROLL_TASK: enroll_task(servicer.Enroll),
    }


TASKS = {DEFAULT_TASK: diarization_pb2.DiarizeRequest, ENROLL_TASK: diarization_pb2.EnrollRequest}


def main() -> None:
    run_tasks_worker(TASKS, lambda: prepare_tasks(worker_config(DiarizationConfig.from_env)))


if __name__ == "__main__":
    main()
