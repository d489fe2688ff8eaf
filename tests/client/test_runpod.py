"""The client's RunPod job client (parakeet.runpod) against a scripted /runsync + /status server:
polling, the payload limit, and every failure as a ParakeetError with its reason."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import grpc
import pytest

from parakeet import orchestrate_request
from parakeet.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ParakeetError,
    ResourceExhausted,
    Unavailable,
)
from parakeet.runpod import (
    RUNPOD_MAX_PAYLOAD_BYTES,
    JobResult,
    RunPodEndpoint,
    RunPodJobs,
    request_to_json,
    response_to_json,
)
from parakeet.v1 import audio_pb2, orchestrator_pb2

ANSWER = orchestrator_pb2.OrchestrateResponse(
    text="hello there", num_speakers=1, response_format=audio_pb2.RESPONSE_FORMAT_SRT, warnings=["w"]
)


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next (status, body) of `replies`; records what it got."""

    replies: ClassVar[list[tuple[int, Any]]] = []
    seen: ClassVar[list[tuple[str, str, Any, str]]] = []

    def _answer(self, body: Any) -> None:
        self.seen.append((self.command, self.path, body, self.headers.get("Authorization", "")))
        status, reply = self.replies.pop(0)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def do_GET(self) -> None:
        self._answer(None)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.fixture
def runpod() -> Iterator[tuple[type[Scripted], RunPodEndpoint]]:
    handler = type("Handler", (Scripted,), {"replies": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, RunPodEndpoint("endpoint", f"http://127.0.0.1:{server.server_address[1]}/v2/endpoint/")
    server.shutdown()
    server.server_close()


def test_the_job_json_is_what_the_workers_read() -> None:
    request = orchestrate_request(b"\x00\x01", diarize=True, response_format="srt", speakers_optional=True)
    request.audio.format = "wav"
    assert request_to_json(request) == {
        "audio": "AAE=",
        "audio_format": "wav",
        "diarize": True,
        "response_format": "srt",
        "speakers_optional": True,
    }
    document = response_to_json(orchestrator_pb2.OrchestrateResponse())
    assert document["response_format"] == "json" and document["num_speakers"] == 0


def test_a_job_that_outlives_runsync_is_polled_until_it_completes(runpod) -> None:
    handler, endpoint = runpod
    handler.replies += [
        (200, {"id": "job-1", "status": "IN_QUEUE"}),
        (200, {"id": "job-1", "status": "IN_PROGRESS"}),
        (200, {"id": "job-1", "status": "COMPLETED", "output": response_to_json(ANSWER)}),
    ]
    jobs = RunPodJobs("key-1", poll_interval_s=0.01)
    request = orchestrate_request("https://example.com/a.mp3", response_format="srt")
    assert jobs.call(endpoint, request, orchestrator_pb2.OrchestrateResponse, timeout=10) == ANSWER
    assert [(method, path) for method, path, _body, _auth in handler.seen] == [
        ("POST", "/v2/endpoint/runsync"),
        ("GET", "/v2/endpoint/status/job-1"),
        ("GET", "/v2/endpoint/status/job-1"),
    ]
    assert handler.seen[0][2] == {"input": {"audio": "https://example.com/a.mp3", "response_format": "srt"}}
    assert {auth for *_rest, auth in handler.seen} == {"Bearer key-1"}


@pytest.mark.parametrize(
    ("reply", "error_type", "code", "reason"),
    [
        # The worker's code and reason, as the gRPC server would send them.
        (
            {"error_code": "INVALID_ARGUMENT", "reason": "AUDIO_UNDECODABLE"},
            InvalidArgument,
            grpc.StatusCode.INVALID_ARGUMENT,
            "AUDIO_UNDECODABLE",
        ),
        # A reason that contradicts the code is not trusted.
        (
            {"error_code": "INVALID_ARGUMENT", "reason": "WARMING_UP"},
            InvalidArgument,
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        ),
        # No output at all (RunPod's test API drops it from FAILED replies): UNAVAILABLE.
        (None, Unavailable, grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
    ],
)
def test_a_failed_job_is_the_workers_error(runpod, reply, error_type, code, reason) -> None:
    handler, endpoint = runpod
    output = None if reply is None else {"error": "could not decode the audio", **reply}
    handler.replies.append(
        (200, {"id": "j", "status": "FAILED", "error": "could not decode the audio", "output": output})
    )
    with pytest.raises(error_type) as raised:
        RunPodJobs("k").call(endpoint, orchestrate_request(b"x"), orchestrator_pb2.OrchestrateResponse)
    error = raised.value
    assert (error.code, error.reason, error.details, error.request_id) == (
        code,
        reason,
        "could not decode the audio",
        "j",
    )


def test_a_job_that_ran_out_of_time_on_runpod_is_deadline_exceeded() -> None:
    error = JobResult.from_reply({"id": "j", "status": "TIMED_OUT"}).worker_error()
    assert isinstance(error, DeadlineExceeded) and error.details == "TIMED_OUT"


@pytest.mark.parametrize(
    ("status", "error_type", "reason", "message"),
    [
        (
            401,
            FailedPrecondition,
            "BACKEND_CREDENTIALS",
            "the RunPod endpoint refused RUNPOD_API_KEY (HTTP 401)",
        ),
        (
            403,
            FailedPrecondition,
            "BACKEND_CREDENTIALS",
            "the RunPod endpoint refused RUNPOD_API_KEY (HTTP 403)",
        ),
        (
            500,
            Unavailable,
            "BACKEND_UNAVAILABLE",
            "the RunPod endpoint is unavailable: HTTP 500 from http://",
        ),
    ],
)
def test_http_errors_are_named_with_a_reason(runpod, status, error_type, reason, message) -> None:
    handler, endpoint = runpod
    handler.replies.append((status, {"error": "nope"}))
    with pytest.raises(error_type) as raised:
        RunPodJobs("k").call(endpoint, orchestrate_request(b"x"), orchestrator_pb2.OrchestrateResponse)
    assert raised.value.reason == reason and raised.value.details.startswith(message)
    assert raised.value.retryable == (reason == "BACKEND_UNAVAILABLE")


def test_an_unreachable_endpoint_is_unavailable_and_retryable() -> None:
    with pytest.raises(Unavailable) as raised:
        RunPodJobs("k").call(
            RunPodEndpoint("e", "http://127.0.0.1:9"),
            orchestrate_request(b"x"),
            orchestrator_pb2.OrchestrateResponse,
        )
    assert raised.value.reason == "BACKEND_UNAVAILABLE" and raised.value.retryable


def test_audio_over_runpods_payload_limit_is_refused_before_sending(runpod) -> None:
    handler, endpoint = runpod
    audio = bytes(RUNPOD_MAX_PAYLOAD_BYTES * 3 // 4 + 1024)
    with pytest.raises(ResourceExhausted) as raised:
        RunPodJobs("k").call(endpoint, orchestrate_request(audio), orchestrator_pb2.OrchestrateResponse)
    assert raised.value.reason == "PAYLOAD_TOO_LARGE" and "send an https URL" in raised.value.details
    assert handler.seen == []


def test_polling_stops_at_the_deadline(runpod) -> None:
    handler, endpoint = runpod
    handler.replies += [(200, {"id": "slow", "status": "IN_PROGRESS"})] * 50
    # Which side of a poll the deadline falls on depends on the machine's load: both say so.
    with pytest.raises(
        DeadlineExceeded, match=r"^the deadline passed while (job slow on|waiting for) the RunPod"
    ):
        RunPodJobs("k", poll_interval_s=0.05).call(
            endpoint, orchestrate_request(b"x"), orchestrator_pb2.OrchestrateResponse, timeout=0.3
        )
    assert 2 <= len(handler.seen) < 20


def test_output_the_client_cannot_read_is_unavailable(runpod) -> None:
    handler, endpoint = runpod
    handler.replies.append((200, {"id": "j", "status": "COMPLETED", "output": {"response_format": "docx"}}))
    with pytest.raises(ParakeetError) as raised:
        RunPodJobs("k").call(endpoint, orchestrate_request(b"x"), orchestrator_pb2.OrchestrateResponse)
    assert raised.value.reason == "BACKEND_UNAVAILABLE" and "docx" in raised.value.details
