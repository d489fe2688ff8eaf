"""RunPod serverless worker for the transcription endpoint (split architecture).

Configured by the same options as the gRPC server, read from the environment
(TRANSCRIPTION_MODEL, TRANSCRIPTION_DEVICE, ...). Loads and warms the model before taking jobs;
if it cannot, every job is answered with the reason. Run `python -m parakeet_server.transcription.handler`;
add `--rp_serve_api --rp_api_port N` for the runpod SDK's local test API.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from parakeet.v1 import transcription_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.logs import configure_logging
from parakeet_server.core.runpod_shim import ready_or_refusing, serve_jobs
from parakeet_server.core.runtime_hygiene import prepare_process
from parakeet_server.transcription.server import add_arguments, build_servicer, warm_up


def prepare() -> Callable[
    [transcription_pb2.TranscribeRequest, CallContext], transcription_pb2.TranscribeResponse
]:
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    args, _runpod_flags = parser.parse_known_args()
    servicer = build_servicer(args)
    warm_up(servicer)
    return servicer.Transcribe


def main() -> None:
    prepare_process()  # before any model library loads: see parakeet_server/core/runtime_hygiene.py
    configure_logging()
    serve_jobs(transcription_pb2.TranscribeRequest, ready_or_refusing(prepare))


if __name__ == "__main__":
    main()
