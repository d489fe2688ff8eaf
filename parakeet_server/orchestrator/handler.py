"""RunPod serverless worker for the orchestrator and single-endpoint architectures.

ORCHESTRATOR_BACKEND=runpod (the default here; the CPU orchestrator worker) calls the two split
endpoints named by TRANSCRIPTION_ENDPOINT_ID and DIARIZATION_ENDPOINT_ID with RUNPOD_API_KEY;
ORCHESTRATOR_BACKEND=inprocess (the single endpoint) loads both models in this worker. Either
way the job input is the existing `{"input": {"audio": ..., "diarize": true, "response_format":
"json"}}`. Run `python -m parakeet_server.orchestrator.handler`; add `--rp_serve_api --rp_api_port N`
for the runpod SDK's local test API.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from parakeet.v1 import orchestrator_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.logs import configure_logging
from parakeet_server.core.runpod_shim import ready_or_refusing, serve_jobs
from parakeet_server.core.runtime_hygiene import prepare_process
from parakeet_server.diarization import server as diarization_server
from parakeet_server.orchestrator.server import add_arguments, backends_from_args
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription import server as transcription_server


def prepare() -> Callable[
    [orchestrator_pb2.OrchestrateRequest, CallContext], orchestrator_pb2.OrchestrateResponse
]:
    parser = argparse.ArgumentParser(add_help=False)
    for module in (transcription_server, diarization_server):
        module.add_arguments(parser)
    add_arguments(parser)
    parser.set_defaults(backend=os.environ.get("ORCHESTRATOR_BACKEND", "runpod"))
    args, _runpod_flags = parser.parse_known_args()
    servicer = OrchestratorServicer(backends_from_args(args))
    servicer.backends.warm_up()
    return servicer.Orchestrate


def main() -> None:
    prepare_process()  # before any model library loads: see parakeet_server/core/runtime_hygiene.py
    configure_logging()
    serve_jobs(orchestrator_pb2.OrchestrateRequest, ready_or_refusing(prepare))


if __name__ == "__main__":
    main()
