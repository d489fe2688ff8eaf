"""The gRPC servers: health, reflection, readiness gate, error mapping, graceful drain, CLI."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from parakeet.v1 import diarization_pb2, diarization_pb2_grpc
from parakeet_server.core.context import CallContext
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed
from parakeet_server.core.grpc_server import HostedService
from tests.support.servers import VENV_BIN, free_port, health_status, wait_for_health

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TRANSCRIPTION = "parakeet.v1.TranscriptionService"
DIARIZATION = "parakeet.v1.DiarizationService"
ORCHESTRATOR = "parakeet.v1.OrchestratorService"


class ScriptedDiarizer(diarization_pb2_grpc.DiarizationServiceServicer):
    """A servicer whose behaviour each test scripts (the transport is what is under test)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.release.set()

    def Diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        if request.num_speakers < 0:
            raise InvalidRequest("num_speakers must be at least 1")
        if request.num_speakers == 99:
            raise RuntimeError("secret internal detail")
        self.started.set()
        self.release.wait(10)
        return diarization_pb2.DiarizeResponse(num_speakers=request.num_speakers, duration=1.5)


def diarizer_service(servicer: ScriptedDiarizer, warm_up=None) -> HostedService:
    return HostedService(
        name=DIARIZATION,
        register=lambda server: diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(
            servicer, server
        ),
        warm_up=warm_up or (lambda: None),
    )


def diarize(address: str, num_speakers: int = 2, timeout: float = 10.0) -> diarization_pb2.DiarizeResponse:
    with grpc.insecure_channel(address) as channel:
        stub = diarization_pb2_grpc.DiarizationServiceStub(channel)
        return stub.Diarize(diarization_pb2.DiarizeRequest(num_speakers=num_speakers), timeout=timeout)


def test_health_is_not_serving_and_calls_unavailable_until_warm_up_finishes(start_host) -> None:
    warm = threading.Event()
    host = start_host([diarizer_service(ScriptedDiarizer(), warm_up=lambda: warm.wait(10))])
    assert health_status(host.address, DIARIZATION) == NOT_SERVING
    assert health_status(host.address) == NOT_SERVING
    with pytest.raises(grpc.RpcError) as raised:
        diarize(host.address)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "warming up" in raised.value.details()
    warm.set()
    wait_for_health(host.address, DIARIZATION)
    assert health_status(host.address) == SERVING
    assert diarize(host.address).num_speakers == 2


def test_failed_warm_up_keeps_not_serving_and_answers_failed_precondition(start_host) -> None:
    def fail() -> None:
        raise PreconditionFailed("accept the conditions of pyannote/speaker-diarization-3.1")

    host = start_host([diarizer_service(ScriptedDiarizer(), warm_up=fail)])
    assert host.wait_until_warm(5)
    assert health_status(host.address, DIARIZATION) == NOT_SERVING
    with pytest.raises(grpc.RpcError) as raised:
        diarize(host.address)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == "accept the conditions of pyannote/speaker-diarization-3.1"


def test_service_errors_map_to_codes_and_crashes_hide_details(start_host) -> None:
    host = start_host([diarizer_service(ScriptedDiarizer())])
    wait_for_health(host.address, DIARIZATION)
    with pytest.raises(grpc.RpcError) as invalid:
        diarize(host.address, num_speakers=-1)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.value.details() == "num_speakers must be at least 1"
    with pytest.raises(grpc.RpcError) as crash:
        diarize(host.address, num_speakers=99)
    assert crash.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in crash.value.details()
    assert "Traceback" not in crash.value.details()
    assert diarize(host.address, num_speakers=3).num_speakers == 3


def test_drain_finishes_in_flight_calls_and_refuses_new_ones(start_host) -> None:
    servicer = ScriptedDiarizer()
    host = start_host([diarizer_service(servicer)])
    wait_for_health(host.address, DIARIZATION)
    servicer.release.clear()
    results: list[object] = []
    in_flight = threading.Thread(target=lambda: results.append(diarize(host.address, num_speakers=4)))
    in_flight.start()
    assert servicer.started.wait(5)
    drainer = threading.Thread(target=host.drain, args=(5.0,))
    drainer.start()
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as refused:
        diarize(host.address, timeout=1.0)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    servicer.release.set()
    in_flight.join(5)
    drainer.join(5)
    assert [r.num_speakers for r in results] == [4]


def test_bearer_token_is_required_on_parakeet_rpcs_but_not_on_health(start_host) -> None:
    host = start_host([diarizer_service(ScriptedDiarizer())], auth_token="s3cret")
    wait_for_health(host.address, DIARIZATION)
    with grpc.insecure_channel(host.address) as channel:
        stub = diarization_pb2_grpc.DiarizationServiceStub(channel)
        request = diarization_pb2.DiarizeRequest(num_speakers=2)
        for metadata in (None, (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Diarize(request, timeout=5, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Bearer <token>" in refused.value.details()
        reply = stub.Diarize(request, timeout=5, metadata=(("authorization", "Bearer s3cret"),))
    assert reply.num_speakers == 2


def test_calls_over_the_concurrency_limit_are_resource_exhausted(start_host) -> None:
    servicer = ScriptedDiarizer()
    host = start_host([diarizer_service(servicer)], max_concurrent_requests=1)
    wait_for_health(host.address, DIARIZATION)
    servicer.release.clear()
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(diarize(host.address, num_speakers=5)))
    first.start()
    assert servicer.started.wait(5)
    with pytest.raises(grpc.RpcError) as refused:
        diarize(host.address)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 1 concurrent requests" in refused.value.details()
    servicer.release.set()
    first.join(5)
    assert [r.num_speakers for r in results] == [5]
    assert diarize(host.address, num_speakers=6).num_speakers == 6


def test_request_id_is_echoed_and_calls_are_counted_by_code(start_host) -> None:
    from parakeet_server.core.metrics import REQUESTS

    host = start_host([diarizer_service(ScriptedDiarizer())])
    wait_for_health(host.address, DIARIZATION)
    invalid_before = REQUESTS.labels("Diarize", "INVALID_ARGUMENT")._value.get()
    with grpc.insecure_channel(host.address) as channel:
        stub = diarization_pb2_grpc.DiarizationServiceStub(channel)
        _reply, call = stub.Diarize.with_call(
            diarization_pb2.DiarizeRequest(num_speakers=1), timeout=5, metadata=(("x-request-id", "req-42"),)
        )
        assert dict(call.trailing_metadata())["x-request-id"] == "req-42"
        with pytest.raises(grpc.RpcError):
            stub.Diarize(diarization_pb2.DiarizeRequest(num_speakers=-1), timeout=5)
    assert REQUESTS.labels("Diarize", "INVALID_ARGUMENT")._value.get() == invalid_before + 1


def grpcurl(*args: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "grpcurl"), "-plaintext", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_parakeet_server_all_lists_every_service_over_reflection(
    spawn, tdt_model_path, pyannote_pipeline_path
) -> None:
    ports = {name: free_port() for name in ("transcription", "diarization", "orchestrator")}
    process = spawn(
        "parakeet-server",
        "all",
        "--host",
        "127.0.0.1",
        "--model",
        str(tdt_model_path),
        "--pipeline",
        str(pyannote_pipeline_path),
        *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))),
    )
    for name, service in (
        ("transcription", TRANSCRIPTION),
        ("diarization", DIARIZATION),
        ("orchestrator", ORCHESTRATOR),
    ):
        address = f"127.0.0.1:{ports[name]}"
        wait_for_health(address, service, process=process, timeout=120)
        listed = grpcurl(address, "list").split()
        assert listed == sorted(
            [service, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
        )

    described = grpcurl(f"127.0.0.1:{ports['transcription']}", "describe", TRANSCRIPTION)
    assert (
        "rpc Transcribe ( .parakeet.v1.TranscribeRequest ) returns ( .parakeet.v1.TranscribeResponse );"
        in described
    )
    request = grpcurl(f"127.0.0.1:{ports['transcription']}", "describe", "parakeet.v1.TranscribeRequest")
    assert "repeated .parakeet.v1.SpeakerTurn diarization_segments = 5;" in request

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    output = process.output()
    assert "received SIGTERM; draining" in output


def parakeet_health(address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "parakeet"), "health", "--server", address],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_parakeet_client_health_command(spawn) -> None:
    # RunPod backends scale themselves: nothing to wait for, the orchestrator serves at once.
    port = free_port()
    nowhere = f"http://127.0.0.1:{free_port()}"
    process = spawn(
        "parakeet-server",
        "orchestrator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend",
        "runpod",
        "--transcription-endpoint-url",
        nowhere,
        "--diarization-endpoint-url",
        nowhere,
    )
    wait_for_health(f"127.0.0.1:{port}", ORCHESTRATOR, process=process)
    result = parakeet_health(f"127.0.0.1:{port}")
    assert result.returncode == 0
    assert result.stdout.strip() == f"{ORCHESTRATOR}: SERVING"


def test_an_orchestrator_without_its_grpc_backends_is_not_serving(spawn) -> None:
    """Its health follows its backends': with nobody at their addresses it stays NOT_SERVING."""
    port = free_port()
    process = spawn(
        "parakeet-server",
        "orchestrator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--transcription-address",
        f"127.0.0.1:{free_port()}",
        "--diarization-address",
        f"127.0.0.1:{free_port()}",
    )
    address = f"127.0.0.1:{port}"
    wait_for_health(address, ORCHESTRATOR, want=NOT_SERVING, process=process)
    time.sleep(2.5)  # a few probe rounds
    assert health_status(address, ORCHESTRATOR) == NOT_SERVING
    result = parakeet_health(address)
    assert result.returncode == 1
    assert result.stdout.strip() == f"{ORCHESTRATOR}: NOT_SERVING"
    assert "parakeet.v1.OrchestratorService is not ready: the transcription backend at" in process.output()
