"""Dynamic micro-batching: concurrent requests share one forward pass.

Requests are queued; a single worker thread (the only thread that touches the model) takes the
first waiting item, gathers more for at most `max_wait_ms` or until the batch is full (by count
or by total cost, e.g. seconds of audio), runs them together and hands each caller its own
result. A caller that gave up before its batch started is dropped, so cancelled work is freed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from parakeet_server.core.metrics import BATCH_SIZE, QUEUE_DEPTH

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class BatchPolicy:
    """How long to wait for company, and how much to take at once."""

    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    max_batch_cost: float = float("inf")


class MicroBatcher(Generic[ItemT, ResultT]):
    """Runs `process(batch)` on one worker thread; `submit` returns a Future per item."""

    def __init__(
        self,
        process: Callable[[Sequence[ItemT]], Sequence[ResultT]],
        policy: BatchPolicy | None = None,
        cost: Callable[[ItemT], float] = lambda _item: 1.0,
        name: str = "micro-batcher",
    ) -> None:
        self.policy = policy or BatchPolicy()
        self._process = process
        self._cost = cost
        self._queue: queue.Queue[tuple[ItemT, Future[ResultT]] | None] = queue.Queue()
        self._closed = False
        self.batch_sizes: deque[int] = deque(maxlen=1024)  # recent batch sizes, for metrics and tests
        self.name = name
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def submit(self, item: ItemT) -> Future[ResultT]:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        future: Future[ResultT] = Future()
        self._queue.put((item, future))
        return future

    def close(self) -> None:
        """Finish the batch in progress; fail whatever is still queued."""
        self._closed = True
        self._queue.put(None)
        self._worker.join()
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not None and entry[1].set_running_or_notify_cancel():
                entry[1].set_exception(RuntimeError("the batcher closed before this item ran"))

    def _gather(
        self, first: tuple[ItemT, Future[ResultT]]
    ) -> tuple[list[tuple[ItemT, Future[ResultT]]], bool]:
        batch = [first]
        total = self._cost(first[0])
        deadline = time.monotonic() + self.policy.max_wait_ms / 1000.0
        while len(batch) < self.policy.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                entry = (
                    self._queue.get(timeout=max(0.0, remaining))
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if entry is None:
                return batch, True
            cost = self._cost(entry[0])
            if total + cost > self.policy.max_batch_cost:
                self._queue.put(entry)  # starts the next batch instead
                break
            batch.append(entry)
            total += cost
        return batch, False

    def _run(self) -> None:
        while not self._run_batch(self._queue.get()):
            pass

    def _run_batch(self, first: tuple[ItemT, Future[ResultT]] | None) -> bool:
        """One batch; True when the batcher is closing. A method of its own so that the batch's
        items (hours of audio, for a long recording) are let go when it returns, not kept by the
        worker's locals until the next item arrives."""
        if first is None:
            return True
        batch, closing = self._gather(first)
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        QUEUE_DEPTH.labels(self.name).set(self._queue.qsize())
        if live:
            self.batch_sizes.append(len(live))
            BATCH_SIZE.labels(self.name).observe(len(live))
            try:
                results = self._process([item for item, _ in live])
            except BaseException as error:  # every waiter must hear about it
                for _, future in live:
                    future.set_exception(error)
            else:
                for (_, future), result in zip(live, results, strict=True):
                    future.set_result(result)
        return closing
