"""RunPod serverless worker for the orchestrator and single-endpoint architectures.

ORCHESTRATOR_BACKEND=runpod (the default here; the CPU orchestrator worker) calls the two split
endpoints named by TRANSCRIPTION_ENDPOINT_ID and DIARIZATION_ENDPOINT_ID with RUNPOD_API_KEY;
ORCHESTRATOR_BACKEND=inprocess (the single endpoint) loads both models in this worker, configured
by the transcription and diarization workers' variables. Either way the job input is the
existing `{"input": {"audio": ..., "diarize": true, "response_format": "json"}}`. Run
`python -m parakeet_server.orchestrator.handler`; add `--rp_serve_api --rp_api_port N` for the
runpod SDK's local test API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from parakeet.v1 import orchestrator_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.runpod_shim import run_worker
from parakeet_server.core.settings import worker_config
from parakeet_server.orchestrator.config import OrchestratorConfig
from parakeet_server.orchestrator.wiring import build_servicer

Orchestrate = Callable[
    [orchestrator_pb2.OrchestrateRequest, CallContext], orchestrator_pb2.OrchestrateResponse
]


def prepare(config: OrchestratorConfig) -> Orchestrate:
    """The servicer the config describes, its backends warmed up; in process without the
    streaming model (a RunPod job is a whole recording, so a second model copy would only cost
    memory)."""
    transcription = replace(config.transcription, streaming_enabled=False)
    servicer = build_servicer(replace(config, transcription=transcription))
    servicer.backends.warm_up()
    return servicer.Orchestrate


def main() -> None:
    run_worker(
        orchestrator_pb2.OrchestrateRequest,
        lambda: prepare(worker_config(lambda: OrchestratorConfig.from_env(backend="runpod"))),
    )


if __name__ == "__main__":
    main()
