"""RunPod serverless worker for the diarization endpoint: the shared shim over DiarizationServicer.

Run `python -m services.diarization.handler` in the worker image; add
`--rp_serve_api --rp_api_port N` for the SDK's local test API.
"""

from __future__ import annotations

from parakeet.v1 import diarization_pb2
from services.core.runpod_shim import serve_jobs
from services.diarization.servicer import DiarizationServicer


def main() -> None:
    serve_jobs(diarization_pb2.DiarizeRequest, DiarizationServicer().Diarize)


if __name__ == "__main__":
    main()
