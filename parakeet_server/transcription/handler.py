"""RunPod serverless worker for the transcription endpoint (split architecture).

Configured from the environment (TranscriptionConfig.from_env: TRANSCRIPTION_MODEL,
TRANSCRIPTION_DEVICE, ..., MAX_AUDIO_SECONDS), as the gRPC server is from its flags. Loads and
warms the model before taking jobs; if it cannot (or a variable is bad), every job is answered
with the reason. Run `python -m parakeet_server.transcription.handler`; add
`--rp_serve_api --rp_api_port N` for the runpod SDK's local test API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from parakeet.v1 import transcription_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.runpod_shim import run_worker
from parakeet_server.core.settings import worker_config
from parakeet_server.transcription.config import TranscriptionConfig
from parakeet_server.transcription.wiring import build_servicer, warm_up

Transcribe = Callable[
    [transcription_pb2.TranscribeRequest, CallContext], transcription_pb2.TranscribeResponse
]


def prepare(config: TranscriptionConfig) -> Transcribe:
    """The servicer the config describes, loaded and warmed up; without the streaming model (a
    RunPod job is a whole recording, so a second copy of the model would only cost memory)."""
    servicer = build_servicer(replace(config, streaming_enabled=False))
    warm_up(servicer)
    return servicer.Transcribe


def main() -> None:
    run_worker(
        transcription_pb2.TranscribeRequest, lambda: prepare(worker_config(TranscriptionConfig.from_env))
    )


if __name__ == "__main__":
    main()
