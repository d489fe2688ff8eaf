"""Error reasons -> HTTP statuses and OpenAI error bodies, read from the one reasons table.

The gateway makes no decisions of its own about a request; when the orchestrator refuses one,
the reason in its status details (`google.rpc.ErrorInfo`) picks the HTTP status from
`parakeet.errors.REASONS` and its message (which already says what to change) goes to the
client unchanged. A status without an ErrorInfo (grpcio's own refusals, an unreachable
orchestrator) counts as its code's default reason. Errors the gateway raises itself (a missing
form field, a bad token, an oversized upload) use the same table, so a client sees the same
status, `code` and `reason` whichever layer refused the request.

The body is OpenAI's, `{"error": {"message", "type", "param", "code"}}`, with `code` the gRPC
status name in lower case ("invalid_argument", "unavailable", ...), plus `reason`, the
machine-readable reason ("DURATION_LIMIT", "CONCURRENCY_LIMIT", ...). A retryable reason is
answered with `Retry-After: 1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from parakeet.errors import default_reason, reason_info, reason_of


@dataclass(frozen=True)
class HttpStatus:
    """How one reason is answered over HTTP: status, OpenAI error type, optional Retry-After."""

    status: int
    type: str
    retry_after_s: int | None = None


INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"

# OpenAI's error type for each HTTP status the table uses; 5xx are all server errors.
_OPENAI_TYPES = {401: AUTHENTICATION, 403: PERMISSION, 429: RATE_LIMIT}

# HTTP statuses the gateway meets without a gRPC status (routing, body parsing) -> the gRPC code
# that means the same, so their `code` and `reason` read like every other error's.
HTTP_TO_GRPC: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def http_status_for(reason: str) -> HttpStatus:
    """The HTTP answer for a reason (`parakeet.errors.REASONS`; an unknown one is a 500)."""
    info = reason_info(reason)
    error_type = _OPENAI_TYPES.get(info.http_status, SERVER if info.http_status >= 500 else INVALID_REQUEST)
    return HttpStatus(info.http_status, error_type, 1 if info.retryable else None)


class GatewayError(Exception):
    """A request that ends in an OpenAI-style error response."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        code: str,
        param: str | None = None,
        retry_after_s: int | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s
        self.reason = reason or code.upper()

    @classmethod
    def for_reason(
        cls, reason: str, message: str, param: str | None = None, code: grpc.StatusCode | None = None
    ) -> GatewayError:
        """The error for a reason, whether the orchestrator or the gateway raised it. `code` is
        the status code it came with (the table's code for the reason when not given)."""
        answer = http_status_for(reason)
        code = code or reason_info(reason).code
        return cls(
            answer.status, message, answer.type, code.name.lower(), param, answer.retry_after_s, reason
        )

    @classmethod
    def for_code(cls, code: grpc.StatusCode, message: str, param: str | None = None) -> GatewayError:
        """The error for a gRPC status code without a reason of its own: its default reason's."""
        return cls.for_reason(default_reason(code), message, param, code)

    @classmethod
    def for_http_status(cls, status: int, message: str, param: str | None = None) -> GatewayError:
        """An error met before any gRPC call (routing, body parsing), keeping its HTTP status."""
        code = HTTP_TO_GRPC.get(status, grpc.StatusCode.UNKNOWN)
        error_type = INVALID_REQUEST if 400 <= status < 500 else SERVER
        return cls(status, message, error_type, code.name.lower(), param, reason=default_reason(code))

    def body(self) -> dict[str, Any]:
        """OpenAI's error body, which the openai client turns into `APIStatusError.body`."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
                "reason": self.reason,
            }
        }

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"retry-after": str(self.retry_after_s)}


def from_rpc_error(error: grpc.RpcError) -> GatewayError:
    """A failed Orchestrate call as the HTTP error to answer with; the message is passed on as is,
    the HTTP status is chosen by the status's ErrorInfo reason (never by its message)."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or code.name
    reason = reason_of(error)
    if reason is None or reason_info(reason).code != code:
        reason = default_reason(code)
    too_large = http_status_for(reason).status == 413
    return GatewayError.for_reason(reason, details, param="file" if too_large else None, code=code)
