"""Faults with real processes: `parakeet-server orchestrator --backend grpc` in front of real
`parakeet-server transcription` and `parakeet-server diarization` processes over the fixture
models (see the `stack` fixture). Backends are killed, stalled (SIGSTOP) and restarted under the
orchestrator's feet; a model server is drained with SIGTERM.

The tests run in file order and share the stack: each leaves it serving (or, for the last one,
drained).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parakeet.v1 import (
    audio_pb2,
    diarization_pb2,
    diarization_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)
from tests.diarization.helpers import synthesize
from tests.reliability.conftest import ServerProcess, Stack

SPEECH = synthesize()  # 12 s: diarization takes a few seconds on CPU, transcription much less
SHORT_SPEECH = synthesize(("noise", "tone", "chirp", "square"))  # 6 s: about half that
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
RECOVERY_BUDGET_S = 30.0  # after the restarted backend reports SERVING


def orchestrate_request(speakers_optional: bool = False) -> orchestrator_pb2.OrchestrateRequest:
    return orchestrator_pb2.OrchestrateRequest(
        audio=audio_pb2.Audio(content=SHORT_SPEECH),
        diarize=True,
        word_timestamps=True,
        speakers_optional=speakers_optional,
    )


@pytest.fixture
def orchestrator(stack: Stack) -> Iterator[orchestrator_pb2_grpc.OrchestratorServiceStub]:
    with grpc.insecure_channel(stack.orchestrator.address) as channel:
        yield orchestrator_pb2_grpc.OrchestratorServiceStub(channel)


def ensure_serving(server: ServerProcess) -> None:
    if not server.alive():
        server.start()
    server.wait_until_serving()


def error_of(future: grpc.Future) -> grpc.RpcError:
    try:
        future.result()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")


def test_the_stack_answers_with_speakers(
    stack: Stack, orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
) -> None:
    response = orchestrator.Orchestrate(orchestrate_request(), timeout=120)
    assert response.num_speakers >= 1 and response.words
    assert all(word.speaker for word in response.words)
    assert list(response.warnings) == []


def test_killing_diarization_mid_request_fails_the_call_unavailable_or_drops_optional_speakers(
    stack: Stack, orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
) -> None:
    ensure_serving(stack.diarization)
    required = orchestrator.Orchestrate.future(orchestrate_request(speakers_optional=False), timeout=120)
    optional = orchestrator.Orchestrate.future(orchestrate_request(speakers_optional=True), timeout=120)
    # Both Diarize calls are inside the diarization server (one running, one queued on its lock).
    deadline = time.monotonic() + 120
    while stack.diarization.in_flight("Diarize") < 2:
        assert time.monotonic() < deadline, "the Diarize calls never arrived"
        time.sleep(0.02)
    stack.diarization.kill()

    error = error_of(required)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert (error.details() or "").startswith("diarization backend unavailable: "), error.details()

    response = optional.result()
    assert response.text and response.words
    assert all(word.speaker == "" for word in response.words)
    assert response.num_speakers == 0 and list(response.speaker_turns) == []
    assert len(response.warnings) == 1
    assert response.warnings[0].startswith(
        "speakers are missing: diarization failed (UNAVAILABLE: diarization backend unavailable: "
    ), response.warnings[0]


def test_with_diarization_down_calls_fail_fast_naming_it_unless_speakers_are_optional(
    stack: Stack, orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
) -> None:
    if stack.diarization.alive():
        stack.diarization.kill()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as failure:
        orchestrator.Orchestrate(orchestrate_request(), timeout=60)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "diarization backend unavailable" in (failure.value.details() or "")
    assert time.monotonic() - started < 10, "a backend that is down must not hold the call"

    response = orchestrator.Orchestrate(orchestrate_request(speakers_optional=True), timeout=60)
    assert response.words and not response.speaker_turns
    assert response.warnings[0].startswith("speakers are missing: diarization failed (UNAVAILABLE")


def test_the_orchestrator_recovers_when_diarization_restarts_on_the_same_port(
    stack: Stack, orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
) -> None:
    orchestrator_pid = stack.orchestrator.pid
    if stack.diarization.alive():
        stack.diarization.kill()
    stack.diarization.start()
    stack.diarization.wait_until_serving()
    serving_at = time.monotonic()
    last: object = None
    while time.monotonic() - serving_at < RECOVERY_BUDGET_S:
        try:
            response = orchestrator.Orchestrate(orchestrate_request(), timeout=60)
        except grpc.RpcError as error:
            last = (error.code(), error.details())
            time.sleep(0.2)
            continue
        assert response.num_speakers >= 1 and all(word.speaker for word in response.words)
        assert stack.orchestrator.alive() and stack.orchestrator.pid == orchestrator_pid
        return
    raise AssertionError(f"no recovery {RECOVERY_BUDGET_S}s after diarization was SERVING again: {last}")


@pytest.fixture
def stalled(stack: Stack) -> Iterator[Stack]:
    """Yields with nothing stalled yet; whatever a test SIGSTOPs is SIGCONTed afterwards."""
    ensure_serving(stack.diarization)
    try:
        yield stack
    finally:
        for server in stack.servers:
            if server.alive():
                server.signal(signal.SIGCONT)


@pytest.mark.parametrize("backend", ["diarization", "transcription"])
def test_a_stalled_backend_is_deadline_exceeded_naming_it(
    stalled: Stack, orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub, backend: str
) -> None:
    server = stalled.diarization if backend == "diarization" else stalled.transcription
    server.signal(signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as failure:
        orchestrator.Orchestrate(orchestrate_request(), timeout=3)
    assert time.monotonic() - started < 6
    server.signal(signal.SIGCONT)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"the deadline passed while waiting for the {backend} backend" in (failure.value.details() or "")


def test_a_stalled_backend_is_deadline_exceeded_and_serves_again_after_sigcont(
    stalled: Stack, orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
) -> None:
    stalled.diarization.signal(signal.SIGSTOP)
    with pytest.raises(grpc.RpcError) as failure:
        orchestrator.Orchestrate(orchestrate_request(), timeout=3)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    stalled.diarization.signal(signal.SIGCONT)
    response = orchestrator.Orchestrate(orchestrate_request(), timeout=120)
    assert response.num_speakers >= 1 and not response.warnings


def test_speakers_optional_returns_the_transcript_when_diarization_stalls(
    stalled: Stack, orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
) -> None:
    stalled.diarization.signal(signal.SIGSTOP)
    response = orchestrator.Orchestrate(orchestrate_request(speakers_optional=True), timeout=5)
    assert response.words and not response.speaker_turns
    assert response.warnings[0].startswith("speakers are missing: diarization failed (DEADLINE_EXCEEDED")


def refusal_code(address: str, within_s: float = 10.0) -> grpc.StatusCode:
    """The code a new connection's call gets once the server stops taking calls (polled, since the
    listener closes a moment after health turns NOT_SERVING)."""
    deadline = time.monotonic() + within_s
    while True:
        with grpc.insecure_channel(address) as fresh:
            try:
                diarization_pb2_grpc.DiarizationServiceStub(fresh).Diarize(
                    diarization_pb2.DiarizeRequest(), timeout=5
                )
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
            return code
        time.sleep(0.05)


def test_sigterm_drains_a_model_server_in_flight_call_finishes_and_the_process_exits_0(stack: Stack) -> None:
    server = stack.diarization
    ensure_serving(server)
    with grpc.insecure_channel(server.address) as channel:
        statuses: queue.Queue[int] = queue.Queue()
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))

        def follow() -> None:
            try:
                for update in watch:
                    statuses.put(update.status)
            except grpc.RpcError:
                pass

        threading.Thread(target=follow, daemon=True).start()
        assert statuses.get(timeout=10) == SERVING

        diarization = diarization_pb2_grpc.DiarizationServiceStub(channel)
        in_flight = diarization.Diarize.future(
            diarization_pb2.DiarizeRequest(audio=audio_pb2.Audio(content=SPEECH)), timeout=120
        )
        server.wait_for_in_flight("Diarize")
        server.signal(signal.SIGTERM)
        assert statuses.get(timeout=10) == NOT_SERVING
        watch.cancel()  # an open Watch is itself an in-flight call the drain would wait for

        # New calls are refused: a fresh connection finds nobody listening (an empty request is
        # used so that a call let in by mistake is answered at once, INVALID_ARGUMENT).
        assert refusal_code(server.address) == grpc.StatusCode.UNAVAILABLE

        response = in_flight.result()
        assert response.duration == 12.0 and response.num_speakers >= 1

    assert server.process is not None
    assert server.process.wait(timeout=60) == 0, server.output()[-3000:]
    assert "received SIGTERM; draining" in server.output()
