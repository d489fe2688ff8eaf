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

from parakeet.v1 import orchestrator_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.logs import configure_logging
from parakeet_server.core.runpod_shim import ready_or_refusing, serve_jobs
from parakeet_server.core.runtime_hygiene import prepare_process
from parakeet_server.core.settings import worker_config
from parakeet_server.orchestrator.config import OrchestratorConfig
from parakeet_server.orchestrator.wiring import build_servicer

Orchestrate = Callable[
    [orchestrator_pb2.OrchestrateRequest, CallContext], orchestrator_pb2.OrchestrateResponse
]


def prepare(config: OrchestratorConfig) -> Orchestrate:
    """The servicer the config describes, its backends warmed up."""
    servicer = build_servicer(config)
    servicer.backends.warm_up()
    return servicer.Orchestrate


def main() -> None:
    prepare_process()  # before any model library loads: see parakeet_server/core/runtime_hygiene.py
    configure_logging()
    serve_jobs(
        orchestrator_pb2.OrchestrateRequest,
        ready_or_refusing(
            lambda: prepare(worker_config(lambda: OrchestratorConfig.from_env(backend="runpod")))
        ),
    )


if __name__ == "__main__":
    main()
