"""What a servicer may ask about the call it is serving, whichever transport carried it.

`grpc.ServicerContext` satisfies this protocol as is; the RunPod shim passes a `JobContext`.
Servicers therefore take the same two arguments on every path and no logic is duplicated.
"""

from __future__ import annotations

import time
from typing import Protocol


class CallContext(Protocol):
    """The parts of a call's context that request logic needs."""

    def time_remaining(self) -> float | None:
        """Seconds left before the caller's deadline, or None when there is none."""
        ...

    def is_active(self) -> bool:
        """False once the caller has gone away (cancelled, deadline passed)."""
        ...


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
