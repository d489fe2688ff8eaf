"""The orchestrator keeps its backends' error reasons (gRPC ErrorInfo, RunPod `reason`), and the
client reads them: `ParakeetError.reason` and `retryable`."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator

import grpc
import pytest

from parakeet import AsyncParakeetClient, ParakeetClient, ParakeetError
from parakeet.errors import REASONS, InvalidArgument, ResourceExhausted, Unavailable
from parakeet.runpod import RunPodEndpoint
from parakeet.v1 import orchestrator_pb2, transcription_pb2, transcription_pb2_grpc
from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.errors import (
    DeadlineExceeded,
    InvalidRequest,
    LimitExceeded,
    PreconditionFailed,
    ServiceUnavailable,
)
from parakeet_server.core.grpc_server import HostedService, ServiceHost
from parakeet_server.core.runpod_shim import run_job
from parakeet_server.orchestrator.backends import (
    GrpcAddresses,
    GrpcBackends,
    RunPodBackends,
    backend_error,
)
from parakeet_server.orchestrator.server import hosted_service
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.reliability import media
from tests.reliability.scripted import ScriptedTranscriber
from tests.support.runsync_stub import runsync_stub
from tests.support.servers import free_port

TRANSCRIPTION = "parakeet.v1.TranscriptionService"
TOO_LONG = "audio is longer than the limit of 0 s"


@pytest.mark.parametrize(
    ("code", "reason", "error_type", "kept_reason", "message"),
    [
        ("RESOURCE_EXHAUSTED", "DURATION_LIMIT", LimitExceeded, "DURATION_LIMIT", "m"),
        ("RESOURCE_EXHAUSTED", "CONCURRENCY_LIMIT", LimitExceeded, "CONCURRENCY_LIMIT", "m"),
        ("RESOURCE_EXHAUSTED", None, LimitExceeded, "RESOURCE_EXHAUSTED", "m"),
        ("INVALID_ARGUMENT", "AUDIO_UNDECODABLE", InvalidRequest, "AUDIO_UNDECODABLE", "m"),
        # A reason that contradicts the code is not trusted: the code's default stands.
        ("INVALID_ARGUMENT", "CONCURRENCY_LIMIT", InvalidRequest, "INVALID_ARGUMENT", "m"),
        ("FAILED_PRECONDITION", "MODEL_NOT_LOADED", PreconditionFailed, "MODEL_NOT_LOADED", "t backend: m"),
        ("DEADLINE_EXCEEDED", None, DeadlineExceeded, "DEADLINE_EXCEEDED", "t backend: m"),
        ("UNAVAILABLE", "WARMING_UP", ServiceUnavailable, "WARMING_UP", "t backend unavailable: m"),
        ("UNAVAILABLE", None, ServiceUnavailable, "BACKEND_UNAVAILABLE", "t backend unavailable: m"),
        ("INTERNAL", "INTERNAL", ServiceUnavailable, "BACKEND_UNAVAILABLE", "t backend unavailable: m"),
        ("UNAUTHENTICATED", "UNAUTHENTICATED", PreconditionFailed, "BACKEND_CREDENTIALS", "t backend: m"),
    ],
)
def test_backend_error_keeps_the_backends_reason(code, reason, error_type, kept_reason, message) -> None:
    error = backend_error("t", code, "m", reason)
    assert (type(error), error.reason, error.message) == (error_type, kept_reason, message)
    assert error.code == REASONS[kept_reason].code


def over_limit_transcription() -> TranscriptionServicer:
    """The real TranscriptionServicer over a scripted engine, refusing audio over 0.5 s."""
    return TranscriptionServicer(
        TranscriptionRunner(ScriptedTranscriber()), limits=AudioLimits(max_duration_s=0.5)
    )


def test_a_runpod_workers_output_names_the_reason() -> None:
    job = {"id": "j", "input": {"audio": base64.b64encode(media.good_wav()).decode()}}
    output = run_job(job, transcription_pb2.TranscribeRequest, over_limit_transcription().Transcribe)
    assert output == {"error": TOO_LONG, "error_code": "RESOURCE_EXHAUSTED", "reason": "DURATION_LIMIT"}


@pytest.fixture
def runpod_worker() -> Iterator[str]:
    """A /runsync stand-in: the transcription worker's run_job, FAILED jobs as RunPod reports them."""
    servicer = over_limit_transcription()
    with runsync_stub({"": (transcription_pb2.TranscribeRequest, servicer.Transcribe)}) as runsync:
        yield runsync.base


def test_the_runpod_backend_keeps_the_workers_reason(runpod_worker: str) -> None:
    backends = RunPodBackends(
        RunPodEndpoint("t", runpod_worker), RunPodEndpoint("d", runpod_worker), api_key="k"
    )
    job = {"id": "o", "input": {"audio": base64.b64encode(media.good_wav()).decode()}}
    output = run_job(job, orchestrator_pb2.OrchestrateRequest, OrchestratorServicer(backends).Orchestrate)
    assert output == {"error": TOO_LONG, "error_code": "RESOURCE_EXHAUSTED", "reason": "DURATION_LIMIT"}


@pytest.fixture
def orchestrator_over_grpc(start_host) -> Iterator[str]:
    """An orchestrator whose gRPC transcription backend refuses audio over 0.5 s."""
    transcription = over_limit_transcription()

    def register(server: grpc.Server) -> None:
        transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(transcription, server)

    backend = start_host([HostedService(TRANSCRIPTION, register)])
    backends = GrpcBackends(
        GrpcAddresses(transcription=backend.address, diarization=f"127.0.0.1:{free_port()}")
    )
    host = start_host([hosted_service(OrchestratorServicer(backends))])
    assert backend.wait_until_warm(30) and host.wait_until_warm(30)
    yield host.address
    backends.close()


def test_the_grpc_backend_keeps_the_reason_and_the_client_reads_it(orchestrator_over_grpc: str) -> None:
    with (
        ParakeetClient(orchestrator_over_grpc, timeout=30) as client,
        pytest.raises(ResourceExhausted) as raised,
    ):
        client.transcribe(media.good_wav())
    error = raised.value
    assert (error.code, error.details, error.reason, error.retryable) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        TOO_LONG,
        "DURATION_LIMIT",
        False,
    )
    assert error.request_id


def test_the_client_reads_a_bad_request_as_not_retryable(orchestrator_over_grpc: str) -> None:
    with (
        pytest.raises(InvalidArgument) as raised,
        ParakeetClient(orchestrator_over_grpc, timeout=30) as client,
    ):
        client.orchestrate(orchestrator_pb2.OrchestrateRequest())
    assert (raised.value.reason, raised.value.retryable) == ("AUDIO_MISSING", False)


def test_the_client_reads_warming_up_as_retryable(start_host) -> None:
    warm = threading.Event()

    def register(server: grpc.Server) -> None:
        transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(
            transcription_pb2_grpc.TranscriptionServiceServicer(), server
        )

    host: ServiceHost = start_host([HostedService(TRANSCRIPTION, register, warm_up=lambda: warm.wait(10))])
    try:
        with ParakeetClient(host.address, timeout=10) as client, pytest.raises(Unavailable) as raised:
            client.transcribe_only(b"RIFF")
        assert (raised.value.reason, raised.value.retryable) == ("WARMING_UP", True)
        assert raised.value.details == f"{TRANSCRIPTION} is warming up; retry once health reports SERVING"

        async def over_aio() -> ParakeetError:
            async with AsyncParakeetClient(host.address, timeout=10) as client:
                try:
                    await client.transcribe_only(b"RIFF")
                except ParakeetError as error:
                    return error
            raise AssertionError("the call succeeded")

        aio_error = asyncio.run(over_aio())
        assert (type(aio_error), aio_error.reason, aio_error.retryable) == (Unavailable, "WARMING_UP", True)
    finally:
        warm.set()


def test_a_status_without_error_info_gets_its_codes_default_reason() -> None:
    unreachable = f"127.0.0.1:{free_port()}"
    with ParakeetClient(unreachable, timeout=5) as client, pytest.raises(Unavailable) as raised:
        client.transcribe_only(b"RIFF")
    assert (raised.value.reason, raised.value.retryable) == ("UNAVAILABLE", True)
    assert ParakeetError.for_code(grpc.StatusCode.INVALID_ARGUMENT, "x").retryable is False
    assert ParakeetError.for_code(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "x", reason="CONCURRENCY_LIMIT"
    ).retryable
    assert not ParakeetError.for_code(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "x", reason="PAYLOAD_TOO_LARGE"
    ).retryable
    assert (
        ParakeetError.for_code(grpc.StatusCode.UNKNOWN, "x", reason="FROM_A_NEWER_SERVER").retryable is False
    )
