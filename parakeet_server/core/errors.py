"""The one error hierarchy of the services.

Servicers and engines raise these; `grpc_server` maps them to status codes (with a
`google.rpc.ErrorInfo` naming the reason) and `runpod_shim` to `{"error", "error_code",
"reason"}`, each in one place. The message is shown to the client as is, so it must say what to
change, and must never carry a stack trace or a secret.

Each error carries a machine-readable `reason` (`parakeet.errors.REASONS`, the one table of
reasons): each class has a default, and a raise site that knows more names it, e.g.
`LimitExceeded("...", reason="DURATION_LIMIT")`. The class's gRPC code is its default reason's,
so a reason of another code is a programming error (ValueError).
"""

from __future__ import annotations

from typing import ClassVar

import grpc

from parakeet.errors import REASONS


class ServiceError(Exception):
    """A request failed for a reason the client can act on."""

    # The reason when the raise site names none; `code` follows from it (set per class below).
    default_reason: ClassVar[str] = "INTERNAL"
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    # Messages quote the offending value; a megabyte of it would swamp a RunPod error and overflow
    # grpc's 16 KiB trailer limit (turning INVALID_ARGUMENT into RESOURCE_EXHAUSTED). The middle
    # is cut, not the end: messages quote the value first and say what to change last.
    MAX_MESSAGE_CHARS = 1000
    _CUT = " ... ({} characters cut) ... "

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.code = REASONS[cls.default_reason].code

    def __init__(
        self, message: str, reason: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        reason = reason or self.default_reason
        if REASONS[reason].code != self.code:
            raise ValueError(f"reason {reason} is {REASONS[reason].code.name}, not {self.code.name}")
        # ErrorInfo's reason and metadata (short machine-readable values, e.g. {"limit": "64"}).
        self.reason = reason
        self.metadata = dict(metadata or {})
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

    default_reason = "INVALID_ARGUMENT"


class LimitExceeded(ServiceError):
    """The request is valid but over a configured limit (size, duration, concurrency)."""

    default_reason = "RESOURCE_EXHAUSTED"


class PreconditionFailed(ServiceError):
    """The server cannot serve this yet: model missing, token missing, gated repo not accepted."""

    default_reason = "FAILED_PRECONDITION"


class ServiceUnavailable(ServiceError):
    """Transient: the server is warming up or draining, or a backend is down. Retrying may help."""

    default_reason = "UNAVAILABLE"


class DeadlineExceeded(ServiceError):
    """The caller's deadline passed before the work finished."""

    default_reason = "DEADLINE_EXCEEDED"


class Unauthenticated(ServiceError):
    """The server requires a bearer token and the call carried none, or a wrong one."""

    default_reason = "UNAUTHENTICATED"


class Unimplemented(ServiceError):
    """The method exists in the contract but this server does not serve it."""

    default_reason = "UNIMPLEMENTED"


_ERROR_TYPES: dict[grpc.StatusCode, type[ServiceError]] = {
    error_type.code: error_type
    for error_type in (
        ServiceError,
        InvalidRequest,
        LimitExceeded,
        PreconditionFailed,
        ServiceUnavailable,
        DeadlineExceeded,
        Unauthenticated,
        Unimplemented,
    )
}


def error_for_reason(reason: str, message: str, metadata: dict[str, str] | None = None) -> ServiceError:
    """The error of the class `reason`'s gRPC code belongs to, carrying that reason. KeyError for
    an unknown reason, or one of a code no class here raises (NOT_FOUND, PERMISSION_DENIED)."""
    return _ERROR_TYPES[REASONS[reason].code](message, reason, metadata)
