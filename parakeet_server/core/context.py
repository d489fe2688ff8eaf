"""What a servicer may ask about the call it is serving, whichever transport carried it.

`grpc.ServicerContext` satisfies this protocol as is; the RunPod shim passes a `JobContext`.
Servicers therefore take the same two arguments on every path and no logic is duplicated.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol, TypeVar

from parakeet_server.core.errors import DeadlineExceeded

ResultT = TypeVar("ResultT")


class CallContext(Protocol):
    """The parts of a call's context that request logic needs."""

    def time_remaining(self) -> float | None:
        """Seconds left before the caller's deadline, or None when there is none."""
        ...

    def is_active(self) -> bool:
        """False once the caller has gone away (cancelled, deadline passed)."""
        ...


# grpc reports "no deadline" as a remaining time of about 2**63 ns; anything past a year is none.
_NO_DEADLINE_AFTER_S = 365 * 24 * 3600.0


def remaining_seconds(context: CallContext) -> float | None:
    """Seconds before the caller's deadline, or None when it set none (whatever the transport says)."""
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE_AFTER_S:
        return None
    return remaining


class JobContext:
    """A RunPod job's context: an optional execution timeout, no cancellation signal."""

    def __init__(self, timeout_s: float | None = None) -> None:
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        remaining = self.time_remaining()
        return remaining is None or remaining > 0.0


def wait_for(future: Future[ResultT], context: CallContext, what: str, poll_s: float = 0.05) -> ResultT:
    """The future's result, or DeadlineExceeded once the caller's deadline passes or it goes away.

    Polls so that a cancelled call frees its queued work at once (the future is cancelled, and
    a micro-batcher skips cancelled items) instead of holding a worker until the deadline.
    """
    while True:
        remaining = context.time_remaining()
        if (remaining is not None and remaining <= 0) or not context.is_active():
            future.cancel()
            raise DeadlineExceeded(f"the deadline passed before {what} finished")
        try:
            return future.result(timeout=poll_s if remaining is None else min(poll_s, remaining))
        except FutureTimeout:
            continue
