"""The real entry points as processes: the RunPod worker's local test API over HTTP, and
`parakeet-server diarization` over gRPC and grpcurl. Both start together (they load in parallel)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from parakeet.v1 import audio_pb2, diarization_pb2, diarization_pb2_grpc
from parakeet_server.diarization import server
from tests.conftest import REPO_ROOT, VENV_BIN, free_port, wait_for_health
from tests.diarization.helpers import turns_of

STARTUP_S = 180.0


@dataclass
class Started:
    """A process started for this module, its log, and where it listens."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def launch(command: list[str], log: Path, port: int, env: dict[str, str]) -> Started:
    """Start a process with its output in a file (a full pipe would block a chatty server)."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT
        )
    return Started(process, log, port)


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
        item.process.terminate()
    for item in started.values():
        try:
            item.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            item.process.kill()
            item.process.wait(timeout=10)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def wait_for_http(worker: Started) -> str:
    """The worker's base URL once its API answers (it starts after load and warm-up)."""
    base = f"http://127.0.0.1:{worker.port}"
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited with {worker.process.returncode}:\n{worker.output()}")
        try:
            with urllib.request.urlopen(f"{base}/docs", timeout=2):
                return base
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise AssertionError(f"worker API not up after {STARTUP_S}s:\n{worker.output()}")


def test_runpod_worker_runsync_over_http(processes, speech, reference) -> None:
    base = wait_for_http(processes["runpod"])
    audio = base64.b64encode(speech).decode()
    done = post(f"{base}/runsync", {"input": {"audio": audio, "audio_format": "wav", "num_speakers": 2}})
    assert done["status"] == "COMPLETED", done
    assert done["output"] == {
        "segments": [{"start": s, "end": e, "speaker": who} for s, e, who in reference(num_speakers=2)],
        "num_speakers": 2,
        "duration": 12.0,
        "model": "speaker-diarization-3.1-local",
        "response_format": "json",
        "document": "",
        "warnings": [],
    }
    failed = post(f"{base}/runsync", {"input": {"audio": audio, "num_speakers": 0}})
    assert failed["status"] == "FAILED"
    assert (
        failed["error"] == "num_speakers must be at least 1 (got 0); leave it unset to let the model estimate"
    )


def test_parakeet_server_diarization_answers_grpc_and_grpcurl(processes, speech, reference) -> None:
    started = processes["grpc"]
    address = f"127.0.0.1:{started.port}"
    try:
        wait_for_health(address, server.SERVICE_NAME, timeout=STARTUP_S, process=started.process)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{started.output()}") from None
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
