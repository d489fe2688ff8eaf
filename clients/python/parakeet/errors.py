"""Why a call failed, machine-readably: the one table of error reasons, and the client's errors.

Every error the services send carries a reason (`DURATION_LIMIT`, `CONCURRENCY_LIMIT`, ...) as a
`google.rpc.ErrorInfo` in the gRPC status details (domain `parakeet.v1`), as `reason` in a RunPod
worker's output and as `reason` in the HTTP gateway's JSON error. `REASONS` below is the only
place a reason's gRPC code, HTTP status and retryability are written; the servers' error classes,
the gateway's HTTP mapping and this module's `ParakeetError.retryable` are all read from it. It
lives in the client package because the client must not import the server, and the server may
import the client.

    ParakeetError                     code, details, request_id, reason, retryable
    ├── InvalidArgument               INVALID_ARGUMENT
    ├── ResourceExhausted             RESOURCE_EXHAUSTED (PAYLOAD_TOO_LARGE, DURATION_LIMIT, CONCURRENCY_LIMIT)
    ├── FailedPrecondition            FAILED_PRECONDITION
    ├── Unavailable                   UNAVAILABLE
    ├── DeadlineExceeded              DEADLINE_EXCEEDED
    ├── Unauthenticated               UNAUTHENTICATED
    ├── Unimplemented                 UNIMPLEMENTED
    └── Internal                      INTERNAL
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

# ErrorInfo.domain of every reason below.
DOMAIN = "parakeet.v1"
REQUEST_ID_KEY = "x-request-id"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class Reason:
    """What one reason means on each transport, and whether the same call may simply be sent again."""

    code: grpc.StatusCode
    http_status: int
    retryable: bool


_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_LIMIT = grpc.StatusCode.RESOURCE_EXHAUSTED
_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE

# The one table: reason -> (gRPC code, HTTP status, retryable). A reason named after its gRPC
# code is that code's default: what an error class raises when its raise site names none, and
# what a status without an ErrorInfo (from grpcio itself, or a foreign server) is read as.
REASONS: dict[str, Reason] = {
    # The request is wrong; sending it again cannot help.
    "INVALID_ARGUMENT": Reason(_INVALID, 400, False),
    "AUDIO_MISSING": Reason(_INVALID, 400, False),  # no audio, or 0 bytes of it
    "AUDIO_UNDECODABLE": Reason(_INVALID, 400, False),  # not audio, no audio stream, no samples
    "INVALID_BASE64": Reason(_INVALID, 400, False),  # a bytes field (RunPod JSON) that is not base64
    "INVALID_FIELD": Reason(_INVALID, 400, False),  # a field's value or JSON type is wrong
    "UNSUPPORTED_FORMAT": Reason(_INVALID, 400, False),  # a response_format unknown, or not for this RPC
    "UNKNOWN_FIELD": Reason(_INVALID, 400, False),  # a RunPod job field the endpoint does not have
    "MALFORMED_REQUEST": Reason(_INVALID, 400, False),  # gRPC bytes that are not the declared message
    "URL_FORBIDDEN": Reason(_INVALID, 400, False),  # not http(s), or a private/loopback address
    "URL_FETCH_FAILED": Reason(_INVALID, 400, False),  # unresolvable, HTTP error, timeout, redirects
    "STREAM_PROTOCOL": Reason(_INVALID, 400, False),  # a stream's first message not a config, or two configs
    "AUDIO_ENCODING": Reason(_INVALID, 400, False),  # stream audio not in its configured encoding
    "AUDIO_TOO_SHORT": Reason(_INVALID, 400, False),  # too little speech to enrol a voiceprint from
    # Over a limit. Only the concurrency limit goes away by waiting.
    "RESOURCE_EXHAUSTED": Reason(_LIMIT, 413, False),
    "PAYLOAD_TOO_LARGE": Reason(_LIMIT, 413, False),
    "DURATION_LIMIT": Reason(_LIMIT, 413, False),
    "CONCURRENCY_LIMIT": Reason(_LIMIT, 429, True),
    # The server cannot serve this until someone changes its configuration.
    "FAILED_PRECONDITION": Reason(_PRECONDITION, 503, False),
    "MODEL_NOT_LOADED": Reason(_PRECONDITION, 503, False),  # missing, gated, no token, failed to load
    "DEVICE_UNAVAILABLE": Reason(_PRECONDITION, 503, False),  # a CUDA device asked for, none visible
    "BACKEND_CREDENTIALS": Reason(_PRECONDITION, 503, False),  # a backend refused the orchestrator's key
    # A voiceprint made by another embedding model or version: the caller's to fix (enrol again), so 400.
    "VOICEPRINT_MISMATCH": Reason(_PRECONDITION, 400, False),
    # Transient: the same call may succeed shortly.
    "UNAVAILABLE": Reason(_UNAVAILABLE, 503, True),
    "WARMING_UP": Reason(_UNAVAILABLE, 503, True),
    "BACKEND_UNAVAILABLE": Reason(_UNAVAILABLE, 503, True),
    # The deadline passed: the same call with the same deadline would most likely time out again.
    "DEADLINE_EXCEEDED": Reason(grpc.StatusCode.DEADLINE_EXCEEDED, 504, False),
    "UNAUTHENTICATED": Reason(grpc.StatusCode.UNAUTHENTICATED, 401, False),
    "PERMISSION_DENIED": Reason(grpc.StatusCode.PERMISSION_DENIED, 403, False),
    "NOT_FOUND": Reason(grpc.StatusCode.NOT_FOUND, 404, False),
    "UNIMPLEMENTED": Reason(grpc.StatusCode.UNIMPLEMENTED, 501, False),
    "INTERNAL": Reason(grpc.StatusCode.INTERNAL, 500, False),
}
# A status code the table does not name (UNKNOWN, DATA_LOSS, ...) is a server-side failure.
UNKNOWN_REASON = Reason(grpc.StatusCode.UNKNOWN, 500, False)


def default_reason(code: grpc.StatusCode) -> str:
    """The reason a status with `code` and no ErrorInfo stands for: the one named after the code."""
    name: str = code.name
    return name


def reason_info(reason: str) -> Reason:
    """The table's row for `reason`; an unknown reason (from a newer server) counts as UNKNOWN."""
    return REASONS.get(reason, UNKNOWN_REASON)


def error_info(reason: str, metadata: dict[str, str] | None = None) -> error_details_pb2.ErrorInfo:
    """The `google.rpc.ErrorInfo` the servers attach to a failed status."""
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {})


def reason_from_status_details(details: bytes) -> str | None:
    """The ErrorInfo reason inside serialized `google.rpc.Status` details, when there is one."""
    status = status_pb2.Status()
    try:
        status.ParseFromString(details)
    except Exception:  # DecodeError: not a google.rpc.Status; treat as no details
        return None
    return _reason_in(status)


def _reason_in(status: status_pb2.Status) -> str | None:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):  # False for a detail of another type
            return info.reason or None
    return None


def _trailing_metadata(error: grpc.RpcError) -> list[tuple[str, str | bytes]]:
    trailing = getattr(error, "trailing_metadata", None)
    try:
        metadata = trailing() if callable(trailing) else None
    except Exception:  # an error raised before the call started has no trailers to read
        return []
    return [(str(key), value) for key, value in metadata or ()]


def reason_of(error: grpc.RpcError) -> str | None:
    """The ErrorInfo reason a failed call's status details carry (sync or aio), else None.

    Read with grpcio-status's `rpc_status.from_call`, which also checks that the details
    belong to this status (their code must be the call's)."""
    from grpc_status import rpc_status  # grpcio-status; only needed once a call has failed

    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError, TypeError):  # details that contradict the status, or no call
        return None
    return None if status is None else _reason_in(status)


# -- the client's errors ---------------------------------------------------------------------


class ParakeetError(Exception):
    """A call failed; `code` is the gRPC status, `details` the server's message (what to change),
    `reason` the machine-readable why (see REASONS), `retryable` whether sending it again may work.

    Catch a subclass (`InvalidArgument`, `Unavailable`, ...) for one kind of failure, or this
    class for all of them. `str(error)` is the details.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        details: str,
        code: grpc.StatusCode | None = None,
        request_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(details)
        self.details = details
        # The server's id for the call (x-request-id), to find it in the server log.
        self.request_id = request_id
        if code is not None:
            self.code = code
        # The server's ErrorInfo reason; a status without one (refused by grpcio itself, a
        # connection that failed) gets its code's default reason.
        self.reason: str = reason or default_reason(self.code)

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed if sent again (after a backoff): e.g. WARMING_UP,
        CONCURRENCY_LIMIT, BACKEND_UNAVAILABLE yes; INVALID_ARGUMENT, DURATION_LIMIT no."""
        return reason_info(self.reason).retryable

    @staticmethod
    def for_code(
        code: grpc.StatusCode, details: str, request_id: str | None = None, reason: str | None = None
    ) -> ParakeetError:
        """The subclass for `code` (ParakeetError itself for the rare ones), carrying `details`."""
        return _ERROR_TYPES.get(code, ParakeetError)(details, code, request_id, reason)

    @staticmethod
    def from_rpc_error(error: grpc.RpcError) -> ParakeetError:
        """A `grpc.RpcError` (sync or aio) as the matching subclass, with the status's reason."""
        code: grpc.StatusCode = error.code()
        return ParakeetError.for_code(
            code, error.details() or code.name, _request_id(error), reason_of(error)
        )


def _request_id(error: grpc.RpcError) -> str | None:
    """The x-request-id trailer the servers attach to every answer, when the error carries one."""
    for key, value in _trailing_metadata(error):
        if key == REQUEST_ID_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class InvalidArgument(ParakeetError):
    """The request is wrong: audio missing or undecodable, impossible speaker counts, bad format."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceExhausted(ParakeetError):
    """Over a server limit (payload size, duration, concurrent calls: see `reason`)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ParakeetError):
    """The server cannot serve this: a model is not loaded, a token is missing or not accepted."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ParakeetError):
    """Transient: the server (or a backend) is starting, draining or down. Retrying may help."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ParakeetError):
    """The deadline passed before the result was ready."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(ParakeetError):
    """The server wants a bearer token and got none, or a wrong one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class Unimplemented(ParakeetError):
    """The server does not host this service (e.g. asking a transcription server to orchestrate)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ParakeetError):
    """A server bug; the server log has the details."""

    code = grpc.StatusCode.INTERNAL


_ERROR_TYPES: dict[grpc.StatusCode, type[ParakeetError]] = {
    error_type.code: error_type
    for error_type in (
        InvalidArgument,
        ResourceExhausted,
        FailedPrecondition,
        Unavailable,
        DeadlineExceeded,
        Unauthenticated,
        Unimplemented,
        Internal,
    )
}
