"""Limits, auth and gRPC -> HTTP error mapping, seen through the openai client and plain HTTP."""

from __future__ import annotations

import base64
import re
import threading
import time

import grpc
import httpx
import openai
import pytest
from google.rpc import error_details_pb2, status_pb2

from parakeet.v1 import audio_pb2
from parakeet_server.core.audio import AudioLimits, load_audio
from parakeet_server.core.errors import InvalidRequest, LimitExceeded, PreconditionFailed
from parakeet_server.gateway.app import FORM_OVERHEAD_BYTES
from parakeet_server.gateway.config import GatewayConfig
from parakeet_server.gateway.errors import GatewayError, HttpStatus, from_rpc_error, http_status_for
from tests.gateway.conftest import TEXT, WAV, Scripted
from tests.support.servers import free_port

FILE = ("call.wav", WAV)
BAD_FILE = b"RIFF but not really a wav file at all" * 10
TOKEN = "s3cret-token"


def transcribe(gateway, api_key: str = "sk-anything", **fields):
    fields.setdefault("file", FILE)
    return gateway.client(api_key).audio.transcriptions.create(model="whisper-1", **fields)


def error_of(raised: pytest.ExceptionInfo[openai.APIStatusError]) -> tuple[int, dict]:
    """(HTTP status, the OpenAI error object) of a refused call."""
    return raised.value.status_code, raised.value.body


# -- mapping table -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "status", "error_type"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "bad", 400, "invalid_request_error"),
        (grpc.StatusCode.UNAUTHENTICATED, "who", 401, "authentication_error"),
        # Without a reason, RESOURCE_EXHAUSTED is a size refusal, whatever its message says.
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "the server is serving its limit of 4 concurrent requests; retry with backoff",
            413,
            "invalid_request_error",
        ),
        (grpc.StatusCode.FAILED_PRECONDITION, "no token", 503, "server_error"),
        (grpc.StatusCode.UNAVAILABLE, "draining", 503, "server_error"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "late", 504, "server_error"),
        (grpc.StatusCode.UNIMPLEMENTED, "no", 501, "server_error"),
        (grpc.StatusCode.INTERNAL, "bug", 500, "server_error"),
        (grpc.StatusCode.UNKNOWN, "?", 500, "server_error"),
    ],
)
def test_grpc_codes_without_a_reason_map_to_http(code, message, status, error_type) -> None:
    error = GatewayError.for_code(code, message)
    assert (error.status, error.error_type) == (status, error_type)
    assert error.body() == {
        "error": {
            "message": message,
            "type": error_type,
            "param": None,
            "code": code.name.lower(),
            "reason": code.name,
        }
    }
    retry = {"retry-after": "1"} if code == grpc.StatusCode.UNAVAILABLE else {}
    assert error.headers() == retry


@pytest.mark.parametrize(
    ("reason", "status", "error_type", "code", "retry_after"),
    [
        ("PAYLOAD_TOO_LARGE", 413, "invalid_request_error", "resource_exhausted", None),
        ("DURATION_LIMIT", 413, "invalid_request_error", "resource_exhausted", None),
        ("CONCURRENCY_LIMIT", 429, "rate_limit_error", "resource_exhausted", "1"),
        ("AUDIO_UNDECODABLE", 400, "invalid_request_error", "invalid_argument", None),
        ("URL_FORBIDDEN", 400, "invalid_request_error", "invalid_argument", None),
        ("MODEL_NOT_LOADED", 503, "server_error", "failed_precondition", None),
        ("BACKEND_CREDENTIALS", 503, "server_error", "failed_precondition", None),
        ("WARMING_UP", 503, "server_error", "unavailable", "1"),
        ("BACKEND_UNAVAILABLE", 503, "server_error", "unavailable", "1"),
        ("UNAUTHENTICATED", 401, "authentication_error", "unauthenticated", None),
        ("NO_SUCH_REASON_YET", 500, "server_error", "unknown", None),
    ],
)
def test_reasons_map_to_http(reason, status, error_type, code, retry_after) -> None:
    error = GatewayError.for_reason(reason, "message")
    assert (error.status, error.error_type, error.code, error.reason) == (status, error_type, code, reason)
    assert http_status_for(reason) == HttpStatus(status, error_type, None if retry_after is None else 1)
    assert error.headers() == ({} if retry_after is None else {"retry-after": retry_after})


class FakeRpcError(grpc.RpcError):
    """A failed call as grpcio hands it over: code, details and the rich-status trailer."""

    def __init__(self, code: grpc.StatusCode, details: str, reason: str | None) -> None:
        self._code, self._details = code, details
        self._trailers: tuple = ()
        if reason is not None:
            status = status_pb2.Status(code=code.value[0], message=details)
            status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="parakeet.v1"))
            self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailers


@pytest.mark.parametrize(
    ("message", "reason", "status", "param"),
    [
        # The message speaks of concurrent requests; the reason says the payload is too large.
        ("the server is serving its limit of 4 concurrent requests", "PAYLOAD_TOO_LARGE", 413, "file"),
        ("audio is 9 bytes; the limit is 8 bytes", "CONCURRENCY_LIMIT", 429, None),
        ("audio is longer than the limit of 600 s", "DURATION_LIMIT", 413, "file"),
        ("over some limit", None, 413, "file"),
    ],
)
def test_the_http_status_of_a_refusal_follows_its_reason_not_its_message(
    message, reason, status, param
) -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, reason))
    assert (error.status, error.reason, error.param, error.message) == (
        status,
        reason or "RESOURCE_EXHAUSTED",
        param,
        message,
    )


# -- limits --------------------------------------------------------------------------------------


def test_upload_at_the_limit_passes_and_one_byte_over_is_413(start_gateway) -> None:
    at_limit = start_gateway(Scripted(), settings=GatewayConfig(max_upload_bytes=len(WAV)))
    assert transcribe(at_limit).text == TEXT
    over = start_gateway(Scripted(), settings=GatewayConfig(max_upload_bytes=len(WAV) - 1))
    with pytest.raises(openai.APIStatusError) as raised:
        transcribe(over)
    status, error = error_of(raised)
    assert status == 413
    assert error == {
        "message": f"the upload is larger than this server's limit of {len(WAV) - 1} bytes (0.2 MiB)",
        "type": "invalid_request_error",
        "param": "file",
        "code": "resource_exhausted",
        "reason": "PAYLOAD_TOO_LARGE",
    }
    assert over.backends.transcribe_requests == []


def test_a_body_far_over_the_limit_is_refused_before_it_is_read(start_gateway) -> None:
    gateway = start_gateway(Scripted(), settings=GatewayConfig(max_upload_bytes=1000))
    assert len(WAV) > 1000 + FORM_OVERHEAD_BYTES
    with pytest.raises(openai.APIStatusError) as raised:
        transcribe(gateway)
    assert error_of(raised)[0] == 413
    assert raised.value.response.headers["x-request-id"]

    def chunks():  # no Content-Length: the body is counted as it streams in
        boundary = b"gatewaytest"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for start in range(0, len(WAV), 16384):
            yield WAV[start : start + 16384]
        yield b"\r\n--" + boundary + b"--\r\n"

    response = httpx.post(
        f"{gateway.url}/v1/audio/transcriptions",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=gatewaytest"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "resource_exhausted"
    assert response.json()["error"]["reason"] == "PAYLOAD_TOO_LARGE"
    assert gateway.backends.transcribe_requests == []


def test_orchestrator_size_refusal_is_413_with_its_message(start_gateway) -> None:
    gateway = start_gateway(Scripted(), max_message_bytes=len(WAV) // 2)  # the gateway's own limit is larger
    with pytest.raises(openai.APIStatusError) as raised:
        transcribe(gateway)
    status, error = error_of(raised)
    assert (status, error["code"], error["param"], error["reason"]) == (
        413,
        "resource_exhausted",
        "file",
        "RESOURCE_EXHAUSTED",
    )
    refusal = re.fullmatch(r"SERVER: Received message larger than max \((\d+) vs\. (\d+)\)", error["message"])
    assert refusal is not None, error["message"]
    assert int(refusal[1]) > len(WAV) and int(refusal[2]) == len(WAV) // 2
    assert gateway.backends.transcribe_requests == []


def test_concurrency_limit_is_429_with_retry_after(start_gateway) -> None:
    gate = threading.Event()
    gateway = start_gateway(Scripted(gate=gate), max_concurrent_requests=1)
    first: list[str] = []
    holder = threading.Thread(target=lambda: first.append(transcribe(gateway).text))
    holder.start()
    deadline = time.monotonic() + 10
    while not gateway.backends.transcribe_requests:  # the first call holds the only slot
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        with pytest.raises(openai.RateLimitError) as raised:
            transcribe(gateway)
    finally:
        gate.set()
        holder.join(10)
    assert first == [TEXT]
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "1"
    assert raised.value.body == {
        "message": "the server is serving its limit of 1 concurrent requests; retry with backoff",
        "type": "rate_limit_error",
        "param": None,
        "code": "resource_exhausted",
        "reason": "CONCURRENCY_LIMIT",
    }


# -- the orchestrator's refusals -----------------------------------------------------------------


def test_undecodable_file_is_400_with_the_orchestrators_message(gateway) -> None:
    with pytest.raises(InvalidRequest) as expected:
        load_audio(audio_pb2.Audio(content=BAD_FILE), AudioLimits())
    with pytest.raises(openai.BadRequestError) as raised:
        transcribe(gateway, file=("call.wav", BAD_FILE))
    assert error_of(raised) == (
        400,
        {
            "message": expected.value.message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_argument",
            "reason": "AUDIO_UNDECODABLE",
        },
    )


def test_form_errors_are_400_naming_the_field(gateway) -> None:
    url = f"{gateway.url}/v1/audio/transcriptions"
    missing = httpx.post(url, data={"model": "whisper-1"}, timeout=30)
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "file"
    assert missing.json()["error"]["code"] == "invalid_argument"
    with pytest.raises(openai.BadRequestError) as raised:
        transcribe(gateway, response_format="json5")
    assert raised.value.body["param"] == "response_format"
    assert raised.value.body["message"] == (
        "the orchestrator service has no response_format 'json5'; "
        "use one of: json, verbose_json, text, srt, vtt, diarized_json"
    )
    bad_granularity = httpx.post(
        url, files={"file": FILE}, data={"timestamp_granularities[]": ["word", "char"]}, timeout=30
    )
    assert bad_granularity.status_code == 400
    assert bad_granularity.json()["error"]["param"] == "timestamp_granularities[]"
    bad_count = httpx.post(url, files={"file": FILE}, data={"num_speakers": "two"}, timeout=30)
    assert (bad_count.status_code, bad_count.json()["error"]["param"]) == (400, "num_speakers")
    # stream=true takes json, text and diarized_json: a document format is refused before any audio moves.
    streaming = httpx.post(
        url, files={"file": FILE}, data={"stream": "true", "response_format": "srt"}, timeout=30
    )
    assert (streaming.status_code, streaming.json()["error"]["param"]) == (400, "response_format")
    assert streaming.json()["error"]["reason"] == "UNSUPPORTED_FORMAT"
    assert gateway.backends.transcribe_requests == []


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ({"json": {"file": "not base64 at all!", "model": "whisper-1"}}, "file: Field required"),
        ({"json": {"file": base64.b64encode(WAV).decode()}}, "file: Field required"),
        (
            {"data": {"file": base64.b64encode(WAV).decode()}},
            "file: Value error, Expected UploadFile, received: <class 'str'>",
        ),
    ],
    ids=["json-invalid-base64", "json-valid-base64", "form-text-field"],
)
def test_the_gateway_has_no_base64_or_json_audio_path(gateway, content, error) -> None:
    """Audio arrives only as a multipart file; base64 in JSON or in a text field is refused, never decoded."""
    response = httpx.post(f"{gateway.url}/v1/audio/transcriptions", timeout=30, **content)
    assert (response.status_code, response.json()) == (
        400,
        {
            "error": {
                "message": error,
                "type": "invalid_request_error",
                "param": "file",
                "code": "invalid_argument",
                "reason": "INVALID_FIELD",
            }
        },
    )
    assert gateway.backends.transcribe_requests == []


def test_failed_precondition_is_503_with_its_reason(start_gateway) -> None:
    reason = "set HUGGINGFACE_ACCESS_TOKEN and accept the pyannote conditions"
    gateway = start_gateway(Scripted(warm_up_error=PreconditionFailed(reason)))
    with pytest.raises(openai.InternalServerError) as raised:
        transcribe(gateway)
    assert error_of(raised) == (
        503,
        {
            "message": reason,
            "type": "server_error",
            "param": None,
            "code": "failed_precondition",
            "reason": "FAILED_PRECONDITION",
        },
    )
    health = httpx.get(f"{gateway.url}/health", timeout=10)
    assert (health.status_code, health.json()) == (503, {"status": "NOT_SERVING"})


def test_unreachable_orchestrator_is_503_and_unhealthy(start_gateway) -> None:
    gateway = start_gateway(orchestrator=f"127.0.0.1:{free_port()}")
    with pytest.raises(openai.InternalServerError) as raised:
        transcribe(gateway)
    status, error = error_of(raised)
    assert (status, error["code"], error["type"]) == (503, "unavailable", "server_error")
    assert raised.value.response.headers["retry-after"] == "1"
    health = httpx.get(f"{gateway.url}/health", timeout=10)
    assert (health.status_code, health.json()) == (503, {"status": "UNAVAILABLE"})


def test_health_is_200_while_serving(gateway) -> None:
    health = httpx.get(f"{gateway.url}/health", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "SERVING"})


def test_gateway_deadline_is_504(start_gateway) -> None:
    gateway = start_gateway(Scripted(delay_s=1.5), settings=GatewayConfig(request_timeout_s=0.3))
    with pytest.raises(openai.APIStatusError) as raised:
        transcribe(gateway)
    assert error_of(raised) == (
        504,
        {
            "message": "the orchestrator did not answer within the gateway's request timeout of 0.3 s",
            "type": "server_error",
            "param": None,
            "code": "deadline_exceeded",
            "reason": "DEADLINE_EXCEEDED",
        },
    )


# -- auth ----------------------------------------------------------------------------------------


def test_gateway_token_is_checked_and_forwarded(start_gateway) -> None:
    gateway = start_gateway(Scripted(), settings=GatewayConfig(auth_token=TOKEN), auth_token=TOKEN)
    for key in ("wrong", TOKEN + "x", TOKEN.upper()):
        with pytest.raises(openai.AuthenticationError) as raised:
            transcribe(gateway, api_key=key)
        status, error = error_of(raised)
        assert (status, error["code"], error["type"]) == (401, "unauthenticated", "authentication_error")
    anonymous = httpx.post(f"{gateway.url}/v1/audio/transcriptions", files={"file": FILE}, timeout=30)
    assert anonymous.status_code == 401
    assert httpx.get(f"{gateway.url}/v1/models", timeout=10).status_code == 401
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200  # probes need no token
    assert gateway.backends.transcribe_requests == []
    assert transcribe(gateway, api_key=TOKEN).text == TEXT
    assert gateway.backends.metadata[0]["authorization"] == f"Bearer {TOKEN}"


def test_orchestrator_token_refusal_passes_through_as_401(start_gateway) -> None:
    gateway = start_gateway(Scripted(), auth_token=TOKEN)  # the gateway itself checks nothing
    with pytest.raises(openai.AuthenticationError) as raised:
        transcribe(gateway, api_key="wrong")
    assert error_of(raised) == (
        401,
        {
            "message": "this server needs an 'authorization: Bearer <token>' header",
            "type": "authentication_error",
            "param": None,
            "code": "unauthenticated",
            "reason": "UNAUTHENTICATED",
        },
    )
    assert transcribe(gateway, api_key=TOKEN).text == TEXT


def test_too_long_audio_is_413_with_reason_duration_limit(start_gateway) -> None:
    gateway = start_gateway(Scripted(limits=AudioLimits(max_duration_s=2.0)))
    with pytest.raises(openai.APIStatusError) as raised:
        transcribe(gateway)
    assert error_of(raised) == (
        413,
        {
            "message": "audio is longer than the limit of 2 s",
            "type": "invalid_request_error",
            "param": "file",
            "code": "resource_exhausted",
            "reason": "DURATION_LIMIT",
        },
    )


@pytest.mark.parametrize(
    ("message", "reason", "status", "error_type"),
    [
        (
            "the server is serving its limit of 1 concurrent requests",
            "PAYLOAD_TOO_LARGE",
            413,
            "invalid_request_error",
        ),
        ("audio is 9 bytes; the limit is 8 bytes", "CONCURRENCY_LIMIT", 429, "rate_limit_error"),
    ],
    ids=["concurrency-words-payload-reason", "size-words-concurrency-reason"],
)
def test_the_orchestrators_reason_picks_429_or_413_whatever_the_message_says(
    start_gateway, message, reason, status, error_type
) -> None:
    gateway = start_gateway(Scripted(transcribe_error=LimitExceeded(message, reason=reason)))
    response = httpx.post(f"{gateway.url}/v1/audio/transcriptions", files={"file": FILE}, timeout=30)
    assert response.status_code == status
    assert response.json()["error"] == {
        "message": message,
        "type": error_type,
        "param": "file" if status == 413 else None,
        "code": "resource_exhausted",
        "reason": reason,
    }
    assert response.headers.get("retry-after") == ("1" if status == 429 else None)
