"""The server's own status for a grpc.aio streaming call, where grpcio would report its own.

grpcio's aio client (grpc/grpc#36066, fix pending in grpc/grpc#43486) overwrites the server's
status with INTERNAL "Internal error from Core" when a request write fails because the server has
just ended the stream: a refusal (a speaker count, a concurrency limit) that arrives while audio is
still being sent. Measured: 85 % of immediate refusals under a fast writer read as INTERNAL. The
sync API is not affected. `StatusKeeper` watches a call and gives back the server's status, so the
async client's `stream()` and the gateway's bridge keep the orchestrator's reasons.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

# grpc.aio's own status for a request write that failed.
CORE_INTERNAL = "Internal error from Core"
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_of(call: Any) -> Any:
    """The status grpcio holds for a grpc.aio call now (None while it runs, or if grpcio hides it).

    Private: `call._cython_call._status` (grpcio 1.6x-1.85). Another grpcio without it gives None,
    and the caller then sees what grpcio raised (a refusal may read as INTERNAL)."""
    status = getattr(getattr(call, "_cython_call", None), "_status", None)
    return status if status is not None and hasattr(status, "trailing_metadata") else None


class StatusKeeper:
    """Remembers the first status a grpc.aio call ends with (its done callback runs on the first
    one set), to undo grpcio's INTERNAL overwrite when the call raises."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._first: list[Any] = []
        call.add_done_callback(lambda _call: self._first.append(status_of(call)))

    def server_error(self, error: grpc.RpcError) -> grpc.RpcError:
        """`error`, or the server's own status when grpcio replaced it with its write failure: the
        first status seen (when the call ended, or now: the server's may come second) that is not
        grpcio's own."""
        if error.code() != grpc.StatusCode.INTERNAL or error.details() != CORE_INTERNAL:
            return error
        for status in [*self._first[:1], status_of(self._call)]:
            code = _STATUS_CODES.get(status.code()) if status is not None else None
            if code is None or code == grpc.StatusCode.OK:
                continue
            if code == grpc.StatusCode.INTERNAL and status.details() == CORE_INTERNAL:
                continue
            trailing = grpc.aio.Metadata.from_tuple(tuple(status.trailing_metadata() or ()))
            return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, status.details())
        return error
