"""`make serve` with PARAKEET_AUTH_TOKEN set (issue #14): `parakeet-server all` plus
`parakeet-server gateway --orchestrator 127.0.0.1:<orchestrator port>`, as real processes over the
fixture models, on free ports instead of 50051-50053 and 8000 but otherwise as the Makefile runs
them (same commands, token only in the environment).

The orchestrator forwards the token to its backends, so Orchestrate answers through grpcurl and
through the OpenAI-compatible gateway; its health turns SERVING only after both backends serve;
and an orchestrator whose backend token is wrong answers FAILED_PRECONDITION naming the backend.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import openai
import pytest
from grpc_health.v1 import health_pb2

from parakeet.v1 import audio_pb2, transcription_pb2, transcription_pb2_grpc
from tests.diarization.helpers import synthesize
from tests.support.servers import (
    VENV_BIN,
    Spawned,
    free_port,
    health_status,
    start_process,
    stop_process,
    wait_for_health,
)

pytestmark = pytest.mark.slow

TOKEN = "make-serve-t0ken"
AUDIO = synthesize()  # 12 s, two "speakers"
SERVING = health_pb2.HealthCheckResponse.SERVING
SERVICES = {
    "transcription": "parakeet.v1.TranscriptionService",
    "diarization": "parakeet.v1.DiarizationService",
    "orchestrator": "parakeet.v1.OrchestratorService",
}
STARTUP_S = 240.0


@dataclass
class Serve:
    ports: dict[str, int]
    gateway: str
    servers: Spawned
    logs: Path

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"


def grpcurl(
    address: str, method: str, request: dict[str, object], *headers: str
) -> subprocess.CompletedProcess[str]:
    command = [str(VENV_BIN / "grpcurl"), "-plaintext", "-max-time", "120"]
    for header in headers:
        command += ["-H", header]
    return subprocess.run(
        [*command, "-d", "@", address, method],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=150,
    )


ORCHESTRATE = "parakeet.v1.OrchestratorService/Orchestrate"
REQUEST = {"audio": {"content": base64.b64encode(AUDIO).decode()}, "diarize": True, "word_timestamps": True}
BEARER = f"authorization: Bearer {TOKEN}"


def wait_for_gateway(url: str, process: Spawned, timeout: float) -> None:
    """Until GET /health is 200: the gateway is up and the orchestrator it calls is SERVING."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        assert process.poll() is None, process.output()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2.0) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last = error.code
        except OSError as error:
            last = error
        time.sleep(0.3)
    raise AssertionError(f"the gateway's /health was not 200 after {timeout}s (last: {last})")


@pytest.fixture(scope="module")
def serve(tdt_model_path: Path, pyannote_pipeline_path: Path, tmp_path_factory) -> Iterator[Serve]:
    logs = tmp_path_factory.mktemp("serve")
    ports = {name: free_port() for name in SERVICES}
    gateway_port = free_port()
    env = {
        "PARAKEET_AUTH_TOKEN": TOKEN,
        "TRANSCRIPTION_MODEL": str(tdt_model_path),
        "DIARIZATION_PIPELINE": str(pyannote_pipeline_path),
        "TRANSCRIPTION_DEVICE": "cpu",
        "DIARIZATION_DEVICE": "cpu",
    }
    servers = start_process(
        [
            str(VENV_BIN / "parakeet-server"),
            "all",
            *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))),
        ],
        logs / "all.log",
        env,
    )
    gateway = start_process(
        [
            str(VENV_BIN / "parakeet-server"),
            "gateway",
            "--port",
            str(gateway_port),
            "--orchestrator",
            f"127.0.0.1:{ports['orchestrator']}",
        ],
        logs / "gateway.log",
        {"PARAKEET_AUTH_TOKEN": TOKEN},
    )
    try:
        yield Serve(ports, f"http://127.0.0.1:{gateway_port}", servers, logs)
    finally:
        stop_process(gateway)
        stop_process(servers)


@dataclass
class Serving(Serve):
    # Health of (orchestrator, transcription, diarization), polled in that order while starting.
    observed: list[tuple[int | None, ...]]


@pytest.fixture(scope="module")
def serving(serve: Serve) -> Serving:
    """The stack once its orchestrator is SERVING, with the health states seen on the way."""
    deadline = time.monotonic() + STARTUP_S
    observed: list[tuple[int | None, ...]] = []
    while True:
        assert serve.servers.poll() is None, serve.servers.output()[-3000:]
        states: list[int | None] = []
        for name in ("orchestrator", "transcription", "diarization"):
            try:
                states.append(health_status(serve.address(name), SERVICES[name], timeout=1.0))
            except grpc.RpcError:
                states.append(None)
        observed.append(tuple(states))
        if states[0] == SERVING:
            return Serving(**vars(serve), observed=observed)
        assert time.monotonic() < deadline, f"not SERVING after {STARTUP_S}s: {observed[-5:]}"
        time.sleep(0.1)


def test_the_orchestrator_is_not_serving_before_both_backends_are(serving: Serving) -> None:
    """It once turned SERVING ~8 s before transcription had warmed up. Backends never go back to
    NOT_SERVING while starting, so when asked just after the orchestrator, they must serve."""
    first_serving = next(states for states in serving.observed if states[0] == SERVING)
    assert first_serving == (SERVING, SERVING, SERVING), serving.observed


def transcribe_directly(serve: Serve) -> str:
    with grpc.insecure_channel(serve.address("transcription")) as channel:
        response = transcription_pb2_grpc.TranscriptionServiceStub(channel).Transcribe(
            transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=AUDIO)),
            timeout=120,
            metadata=(("authorization", f"Bearer {TOKEN}"),),
        )
    assert response.text
    return response.text


def test_orchestrate_through_grpcurl_with_the_token(serving: Serve) -> None:
    result = grpcurl(serving.address("orchestrator"), ORCHESTRATE, REQUEST, BEARER)
    assert result.returncode == 0, result.stderr + serving.servers.output()[-3000:]
    response = json.loads(result.stdout)
    assert response["text"] == transcribe_directly(serving)
    assert response["num_speakers"] >= 1
    assert response["words"] and all(word["speaker"].startswith("SPEAKER_") for word in response["words"])

    refused = grpcurl(serving.address("orchestrator"), ORCHESTRATE, REQUEST)
    assert refused.returncode != 0
    assert "Code: Unauthenticated" in refused.stderr
    assert "Message: this server needs an 'authorization: Bearer <token>' header" in refused.stderr


def test_transcribe_through_the_gateway_with_the_token(serving: Serve) -> None:
    wait_for_gateway(serving.gateway, serving.servers, timeout=60)
    client = openai.OpenAI(base_url=f"{serving.gateway}/v1", api_key=TOKEN, max_retries=0, timeout=120)
    result = client.audio.transcriptions.create(
        model="parakeet-tdt-0.6b-v2",
        file=("speech.wav", AUDIO, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        extra_body={"diarize": True},
    )
    assert result.text == transcribe_directly(serving)
    assert result.segments and all(s.model_extra["speaker"].startswith("SPEAKER_") for s in result.segments)

    wrong = openai.OpenAI(base_url=f"{serving.gateway}/v1", api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.audio.transcriptions.create(
            model="parakeet-tdt-0.6b-v2", file=("speech.wav", AUDIO, "audio/wav")
        )
    assert refused.value.status_code == 401


def test_a_wrong_backend_token_is_failed_precondition_naming_the_backend(
    serving: Serve, spawn, tmp_path: Path
) -> None:
    """A lone orchestrator in front of the stack's backends, its own token right but the one it
    sends them wrong (--backend-auth-token-file)."""
    wrong_token = tmp_path / "backend.token"
    wrong_token.write_text("not-the-token\n")
    port = free_port()
    process = spawn(
        "parakeet-server",
        "orchestrator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--transcription-address",
        serving.address("transcription"),
        "--diarization-address",
        serving.address("diarization"),
        "--backend-auth-token-file",
        str(wrong_token),
        env={"PARAKEET_AUTH_TOKEN": TOKEN},
    )
    # Health needs no token, so the backends' health is known: it is SERVING.
    wait_for_health(f"127.0.0.1:{port}", SERVICES["orchestrator"], process=process, timeout=60)
    result = grpcurl(f"127.0.0.1:{port}", ORCHESTRATE, REQUEST, BEARER)
    assert result.returncode != 0
    assert "Code: FailedPrecondition" in result.stderr, result.stderr
    assert (
        f"Message: the transcription backend at {serving.address('transcription')} refused the orchestrator's "
        "credentials (UNAUTHENTICATED: this server needs an 'authorization: Bearer <token>' header); the "
        "orchestrator sent its token: set PARAKEET_BACKEND_AUTH_TOKEN (or --backend-auth-token-file) on the "
        "orchestrator to the token the transcription server expects"
    ) in result.stderr, result.stderr
    assert "not-the-token" not in process.output()
