"""RunPod serverless worker for the orchestrator endpoint: the shared shim over OrchestratorServicer.

Run `python -m services.orchestrator.handler` in the worker image; add
`--rp_serve_api --rp_api_port N` for the SDK's local test API.
"""

from __future__ import annotations

from parakeet.v1 import orchestrator_pb2
from services.core.runpod_shim import serve_jobs
from services.orchestrator.servicer import OrchestratorServicer


def main() -> None:
    serve_jobs(orchestrator_pb2.OrchestrateRequest, OrchestratorServicer().Orchestrate)


if __name__ == "__main__":
    main()
