"""The micro-batcher lets go of a batch's items once the batch is done (issue #14, item 5).

Its worker thread used to keep the last batch in its locals until the next item arrived, so
after a 3-hour transcription the server held the recording's 660 MB of samples while idle.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Sequence

import numpy as np

from parakeet_server.core.batching import MicroBatcher


def let_go(alive: weakref.ref[np.ndarray]) -> bool:
    """The item is freed once the worker is back waiting for work (it may still be returning)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        gc.collect()
        if alive() is None:
            return True
        time.sleep(0.01)
    return False


def test_an_idle_batcher_holds_no_reference_to_the_last_item() -> None:
    batcher: MicroBatcher[np.ndarray, int] = MicroBatcher(lambda items: [len(item) for item in items])
    try:
        samples = np.zeros(16_000, dtype=np.float32)
        alive = weakref.ref(samples)
        assert batcher.submit(samples).result(timeout=10) == 16_000
        del samples
        assert let_go(alive)
    finally:
        batcher.close()


def test_an_item_whose_batch_failed_is_let_go_too() -> None:
    def fail(items: Sequence[np.ndarray]) -> list[int]:
        raise ValueError("no")

    batcher: MicroBatcher[np.ndarray, int] = MicroBatcher(fail)
    try:
        samples = np.zeros(16_000, dtype=np.float32)
        alive = weakref.ref(samples)
        future = batcher.submit(samples)
        assert isinstance(future.exception(timeout=10), ValueError)
        del samples, future
        assert let_go(alive)
    finally:
        batcher.close()
