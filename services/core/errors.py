"""The one error hierarchy of the services.

Servicers and engines raise these; `grpc_server` maps them to status codes and `runpod_shim`
to `{"error": ...}`, each in one place. The message is shown to the client as is, so it must
say what to change, and must never carry a stack trace or a secret.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """A request failed for a reason the client can act on."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    # Messages quote the offending value; a megabyte of it would swamp a RunPod error and overflow
    # grpc's 16 KiB trailer limit (turning INVALID_ARGUMENT into RESOURCE_EXHAUSTED). The middle
    # is cut, not the end: messages quote the value first and say what to change last.
    MAX_MESSAGE_CHARS = 1000
    _CUT = " ... ({} characters cut) ... "

    def __init__(self, message: str) -> None:
        if len(message) > self.MAX_MESSAGE_CHARS:
            cut = len(message) - self.MAX_MESSAGE_CHARS
            marker = self._CUT.format(cut + len(self._CUT.format(cut)))
            keep = self.MAX_MESSAGE_CHARS - len(marker)
            head, tail = keep * 2 // 3, keep - keep * 2 // 3
            message = message[:head] + marker + message[len(message) - tail :]
        super().__init__(message)
        self.message = message


class InvalidRequest(ServiceError):
    """The request itself is wrong: missing or undecodable audio, bad field values."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class LimitExceeded(ServiceError):
    """The request is valid but over a configured limit (size, duration, concurrency)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PreconditionFailed(ServiceError):
    """The server cannot serve this yet: model missing, token missing, gated repo not accepted."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ServiceUnavailable(ServiceError):
    """Transient: the server is warming up or draining, or a backend is down. Retrying may help."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    """The caller's deadline passed before the work finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(ServiceError):
    """The server requires a bearer token and the call carried none, or a wrong one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class Unimplemented(ServiceError):
    """The method exists in the contract but this server does not serve it."""

    code = grpc.StatusCode.UNIMPLEMENTED
