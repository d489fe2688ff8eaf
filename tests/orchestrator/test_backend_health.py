"""The orchestrator's health follows its gRPC backends': NOT_SERVING until both serve, and again
when one stops (issue #14: in `parakeet-server all` it reported SERVING while transcription was
still warming up, and calls in that window failed)."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from parakeet_server.core.grpc_server import ServerOptions, ServiceHost
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.orchestrator.backends import GrpcAddresses, GrpcBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from tests.orchestrator.grpc_stack import (
    DIARIZATION,
    ORCHESTRATOR,
    TRANSCRIPTION,
    diarization_service,
    held_warm_up,
    orchestrate,
    transcription_service,
)
from tests.orchestrator.test_servicer import transcript
from tests.support.servers import free_port, health_status, wait_for_health

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def orchestrator_over(start_host, transcription: str, diarization: str) -> ServiceHost:
    backends = GrpcBackends(GrpcAddresses(transcription=transcription, diarization=diarization))
    return start_host([orchestrator_server.hosted_service(OrchestratorServicer(backends))])


def test_orchestrator_is_not_serving_until_both_backends_serve_and_again_when_one_drains(
    start_host,
) -> None:
    release, warm_up = held_warm_up()
    transcription = start_host([transcription_service(warm_up)])
    diarization_port = free_port()
    diarization = ServiceHost(
        [diarization_service()], ServerOptions(host="127.0.0.1", port=diarization_port, grace_s=0.5)
    )
    diarization.start()
    try:
        wait_for_health(diarization.address, DIARIZATION)
        orchestrator = orchestrator_over(start_host, transcription.address, diarization.address)
        assert orchestrator.wait_until_warm(5)

        # The transcription backend is still warming up: for several probe rounds (every 1 s) the
        # orchestrator stays NOT_SERVING, and a call gets the backend's UNAVAILABLE.
        for _ in range(3):
            assert health_status(orchestrator.address, ORCHESTRATOR) == NOT_SERVING
            assert health_status(orchestrator.address) == NOT_SERVING
            with pytest.raises(grpc.RpcError) as refused:
                orchestrate(orchestrator.address)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.value.details() == (
                "transcription backend unavailable: parakeet.v1.TranscriptionService is warming up; "
                "retry once health reports SERVING"
            )
            time.sleep(0.7)

        release.set()
        wait_for_health(transcription.address, TRANSCRIPTION)
        wait_for_health(orchestrator.address, ORCHESTRATOR, timeout=5)
        assert health_status(orchestrator.address) == SERVING
        assert orchestrate(orchestrator.address).text == transcript().text

        # A backend that drains (SIGTERM) turns the orchestrator NOT_SERVING within a probe round.
        diarization.drain(0.5)
        wait_for_health(orchestrator.address, ORCHESTRATOR, want=NOT_SERVING, timeout=5)
        assert health_status(orchestrator.address) == NOT_SERVING
        with pytest.raises(grpc.RpcError) as down:
            orchestrate(orchestrator.address)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (down.value.details() or "").startswith("diarization backend unavailable: ")
        # ...which is health, not a gate: what needs only transcription is still served.
        assert orchestrate(orchestrator.address, diarize=False).text == transcript().text

        # Restarted on the same port, it is SERVING again within seconds.
        diarization = ServiceHost(
            [diarization_service()], ServerOptions(host="127.0.0.1", port=diarization_port, grace_s=0.5)
        )
        diarization.start()
        wait_for_health(orchestrator.address, ORCHESTRATOR, timeout=10)
        assert orchestrate(orchestrator.address).num_speakers == 2
    finally:
        release.set()
        diarization.drain(0.1)


def test_not_ready_names_each_backend_and_why(start_host) -> None:
    release, warm_up = held_warm_up()
    transcription = start_host([transcription_service(warm_up)])
    diarization = start_host([diarization_service()])
    wait_for_health(diarization.address, DIARIZATION)
    nobody = f"127.0.0.1:{free_port()}"

    warming = GrpcBackends(
        GrpcAddresses(transcription=transcription.address, diarization=diarization.address)
    )
    assert warming.not_ready() == f"the transcription backend at {transcription.address} is NOT_SERVING"

    # Addresses swapped by mistake: each server answers that it does not host the other service.
    swapped = GrpcBackends(
        GrpcAddresses(transcription=diarization.address, diarization=transcription.address)
    )
    assert swapped.not_ready() == (
        f"the transcription backend at {diarization.address} does not host "
        "parakeet.v1.TranscriptionService (check its address); "
        f"the diarization backend at {transcription.address} does not host "
        "parakeet.v1.DiarizationService (check its address)"
    )

    down = GrpcBackends(GrpcAddresses(transcription=transcription.address, diarization=nobody))
    reason = down.not_ready() or ""
    assert reason.startswith(
        f"the transcription backend at {transcription.address} is NOT_SERVING; "
        f"the diarization backend at {nobody} does not answer health checks (UNAVAILABLE: "
    ), reason

    release.set()
    wait_for_health(transcription.address, TRANSCRIPTION)
    assert warming.not_ready() is None
    for backends in (warming, swapped, down):
        backends.close()


def test_in_process_and_runpod_backends_have_no_probe() -> None:
    from parakeet.runpod import RunPodEndpoint
    from parakeet_server.orchestrator.backends import InProcessBackends, RunPodBackends

    in_process = InProcessBackends(lambda r, c: transcript(), lambda r, c: None, lambda: None)  # type: ignore[arg-type,return-value]
    runpod = RunPodBackends(RunPodEndpoint("t"), RunPodEndpoint("d"), api_key="k")
    grpc_backends = GrpcBackends(GrpcAddresses())
    assert orchestrator_server.hosted_service(OrchestratorServicer(in_process)).probe is None
    assert orchestrator_server.hosted_service(OrchestratorServicer(runpod)).probe is None
    hosted = orchestrator_server.hosted_service(OrchestratorServicer(grpc_backends))
    assert hosted.probe == grpc_backends.not_ready
    assert hosted.probe_interval_s == 1.0
    grpc_backends.close()
