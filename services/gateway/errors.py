"""gRPC status codes -> HTTP statuses and OpenAI error bodies, in one table.

The gateway makes no decisions of its own about a request; when the orchestrator refuses one,
its status code picks the HTTP status here and its message (which already says what to change)
goes to the client unchanged. Errors the gateway raises itself (a missing form field, a bad
token, an oversized upload) use the same table, so a client sees the same status and `code`
whichever layer refused the request.

The body is OpenAI's: `{"error": {"message", "type", "param", "code"}}`, with `code` the gRPC
status name in lower case ("invalid_argument", "unavailable", ...), so an HTTP client can look
the meaning up in the proto's documented errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class HttpStatus:
    """How one gRPC status is answered over HTTP: status, OpenAI error type, optional Retry-After."""

    status: int
    type: str
    retry_after_s: int | None = None


INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"

GRPC_TO_HTTP: dict[grpc.StatusCode, HttpStatus] = {
    grpc.StatusCode.INVALID_ARGUMENT: HttpStatus(400, INVALID_REQUEST),
    grpc.StatusCode.OUT_OF_RANGE: HttpStatus(400, INVALID_REQUEST),
    grpc.StatusCode.UNAUTHENTICATED: HttpStatus(401, AUTHENTICATION),
    grpc.StatusCode.PERMISSION_DENIED: HttpStatus(403, PERMISSION),
    grpc.StatusCode.NOT_FOUND: HttpStatus(404, INVALID_REQUEST),
    # Over a size or duration limit. Concurrency is RESOURCE_EXHAUSTED too: see CONCURRENCY_LIMIT.
    grpc.StatusCode.RESOURCE_EXHAUSTED: HttpStatus(413, INVALID_REQUEST),
    # A model is not loaded or its token is missing: the server cannot serve this, yet.
    grpc.StatusCode.FAILED_PRECONDITION: HttpStatus(503, SERVER),
    grpc.StatusCode.UNAVAILABLE: HttpStatus(503, SERVER, retry_after_s=1),
    grpc.StatusCode.DEADLINE_EXCEEDED: HttpStatus(504, SERVER),
    grpc.StatusCode.UNIMPLEMENTED: HttpStatus(501, SERVER),
}
# The one RESOURCE_EXHAUSTED that retrying fixes: the server was at its concurrent-call limit.
CONCURRENCY_LIMIT = HttpStatus(429, RATE_LIMIT, retry_after_s=1)
# UNKNOWN, INTERNAL, DATA_LOSS, ABORTED, CANCELLED: a server-side failure the client cannot fix.
FALLBACK = HttpStatus(500, SERVER)

# gRPC carries no detail beyond code and message; the interceptor's concurrency refusal is the only
# RESOURCE_EXHAUSTED whose message speaks of concurrent requests (services.core.grpc_server).
_CONCURRENCY_MARKER = "concurrent requests"

# HTTP statuses the gateway meets without a gRPC status (routing, body parsing) -> the gRPC code
# that means the same, so their `code` reads like every other error's.
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


def http_status_for(code: grpc.StatusCode, message: str = "") -> HttpStatus:
    """The HTTP answer for a gRPC status (and, for RESOURCE_EXHAUSTED, its message)."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _CONCURRENCY_MARKER in message:
        return CONCURRENCY_LIMIT
    return GRPC_TO_HTTP.get(code, FALLBACK)


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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    @classmethod
    def for_code(cls, code: grpc.StatusCode, message: str, param: str | None = None) -> GatewayError:
        """The error for a gRPC status code, whether the orchestrator or the gateway raised it."""
        answer = http_status_for(code, message)
        return cls(answer.status, message, answer.type, code.name.lower(), param, answer.retry_after_s)

    @classmethod
    def for_http_status(cls, status: int, message: str, param: str | None = None) -> GatewayError:
        """An error met before any gRPC call (routing, body parsing), keeping its HTTP status."""
        code = HTTP_TO_GRPC.get(status, grpc.StatusCode.UNKNOWN)
        error_type = INVALID_REQUEST if 400 <= status < 500 else SERVER
        return cls(status, message, error_type, code.name.lower(), param)

    def body(self) -> dict[str, Any]:
        """OpenAI's error body, which the openai client turns into `APIStatusError.body`."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"retry-after": str(self.retry_after_s)}


def from_rpc_error(error: grpc.RpcError) -> GatewayError:
    """A failed Orchestrate call as the HTTP error to answer with; the message is passed on as is."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or code.name
    too_large = http_status_for(code, details).status == 413
    return GatewayError.for_code(code, details, param="file" if too_large else None)
