"""RunPod serverless worker for the transcription endpoint (split architecture).

Configured by the same options as the gRPC server, read from the environment
(TRANSCRIPTION_MODEL, TRANSCRIPTION_DEVICE, ...). Loads and warms the model before taking jobs.
Run `python -m services.transcription.handler`; add `--rp_serve_api --rp_api_port N` for the
runpod SDK's local test API.
"""

from __future__ import annotations

import argparse
import logging

from parakeet.v1 import transcription_pb2
from services.core.runpod_shim import serve_jobs
from services.transcription.server import add_arguments, build_servicer, warm_up


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    args, _runpod_flags = parser.parse_known_args()
    servicer = build_servicer(args)
    warm_up(servicer)
    serve_jobs(transcription_pb2.TranscribeRequest, servicer.Transcribe)


if __name__ == "__main__":
    main()
