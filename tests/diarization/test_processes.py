"""The real entry points as processes: the RunPod worker's local test API over HTTP, and
`parakeet-server diarization` over gRPC and grpcurl. Both start together (they load in parallel)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from parakeet.v1 import audio_pb2, diarization_pb2, diarization_pb2_grpc
from parakeet_server.diarization import server
from tests.diarization.helpers import turns_of
from tests.support.servers import (
    VENV_BIN,
    Spawned,
    completed,
    free_port,
    post_json,
    start_process,
    stop_process,
    wait_for_health,
    wait_for_worker,
)

STARTUP_S = 180.0


@dataclass
class Started:
    """A process started for this module and where it listens."""

    process: Spawned
    port: int


def launch(command: list[str], log: Path, port: int, env: dict[str, str]) -> Started:
    return Started(start_process(command, log, env), port)


@pytest.fixture(scope="module")
def processes(pyannote_fixture, tmp_path_factory) -> Iterator[dict[str, Started]]:
    logs = tmp_path_factory.mktemp("diarization-processes")
    env = {
        "HF_HUB_OFFLINE": "1",
        "DIARIZATION_PIPELINE": str(pyannote_fixture.local_pipeline),
        "DIARIZATION_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    api_port, grpc_port = free_port(), free_port()
    started = {
        "runpod": launch(
            [
                str(VENV_BIN / "python"),
                "-m",
                "parakeet_server.diarization.handler",
                "--rp_serve_api",
                "--rp_api_host",
                "127.0.0.1",
                "--rp_api_port",
                str(api_port),
            ],
            logs / "runpod.log",
            api_port,
            env,
        ),
        "grpc": launch(
            [
                str(VENV_BIN / "parakeet-server"),
                "diarization",
                "--host",
                "127.0.0.1",
                "--port",
                str(grpc_port),
                "--pipeline",
                str(pyannote_fixture.local_pipeline),
                "--diarization-device",
                "cpu",
            ],
            logs / "grpc.log",
            grpc_port,
            env,
        ),
    }
    yield started
    for item in started.values():
        stop_process(item.process, grace=20.0)


def test_runpod_worker_runsync_over_http(processes, speech, reference) -> None:
    base = wait_for_worker(processes["runpod"].port, processes["runpod"].process, STARTUP_S)
    audio = base64.b64encode(speech).decode()
    done = post_json(f"{base}/runsync", {"input": {"audio": audio, "audio_format": "wav", "num_speakers": 2}})
    assert completed(done) == {
        "segments": [{"start": s, "end": e, "speaker": who} for s, e, who in reference(num_speakers=2)],
        "num_speakers": 2,
        "duration": 12.0,
        "model": "speaker-diarization-3.1-local",
        "response_format": "json",
        "document": "",
        "warnings": [],
        "speaker_identities": [],
        "overlap_segments": [],
    }
    failed = post_json(f"{base}/runsync", {"input": {"audio": audio, "num_speakers": 0}})
    assert failed["status"] == "FAILED"
    assert (
        failed["error"] == "num_speakers must be at least 1 (got 0); leave it unset to let the model estimate"
    )


def test_parakeet_server_diarization_answers_grpc_and_grpcurl(processes, speech, reference) -> None:
    started = processes["grpc"]
    address = f"127.0.0.1:{started.port}"
    wait_for_health(address, server.SERVICE_NAME, timeout=STARTUP_S, process=started.process)
    with grpc.insecure_channel(address) as channel:
        stub = diarization_pb2_grpc.DiarizationServiceStub(channel)
        response = stub.Diarize(
            diarization_pb2.DiarizeRequest(audio=audio_pb2.Audio(content=speech), num_speakers=2), timeout=120
        )
    assert turns_of(response.segments) == reference(num_speakers=2)
    assert (response.num_speakers, response.duration) == (2, 12.0)

    request = {"audio": {"content": base64.b64encode(speech).decode()}, "num_speakers": 2}
    result = subprocess.run(
        [
            str(VENV_BIN / "grpcurl"),
            "-plaintext",
            "-max-time",
            "120",
            "-d",
            "@",
            address,
            f"{server.SERVICE_NAME}/Diarize",
        ],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert turns_of(answer["segments"]) == reference(num_speakers=2)
    assert answer["num_speakers"] == 2
    assert answer["model"] == "speaker-diarization-3.1-local"
