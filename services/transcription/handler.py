"""RunPod serverless worker for the transcription endpoint: the shared shim over TranscriptionServicer.

Run `python -m services.transcription.handler` in the worker image; add
`--rp_serve_api --rp_api_port N` for the SDK's local test API.
"""

from __future__ import annotations

from parakeet.v1 import transcription_pb2
from services.core.runpod_shim import serve_jobs
from services.transcription.servicer import TranscriptionServicer


def main() -> None:
    serve_jobs(transcription_pb2.TranscribeRequest, TranscriptionServicer().Transcribe)


if __name__ == "__main__":
    main()
