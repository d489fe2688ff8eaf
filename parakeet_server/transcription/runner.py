"""The engine behind a micro-batcher: what the servicer calls, from any number of threads.

Concurrent requests are gathered into one `engine.transcribe` call (see parakeet_server.core.batching);
each caller waits for its own result, bounded by its deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.batching import BatchPolicy, MicroBatcher
from parakeet_server.core.context import CallContext, wait_for
from parakeet_server.transcription.engine import EngineTranscript
from parakeet_server.transcription.hotwords import NO_HOTWORDS, HotwordSet


class Engine(Protocol):
    """What the runner needs of an engine (TranscriptionEngine satisfies it)."""

    @property
    def name(self) -> str: ...

    def transcribe(
        self, waveforms: Sequence[npt.NDArray[np.float32]], hotwords: Sequence[HotwordSet] | None = None
    ) -> list[EngineTranscript]: ...


class Job(NamedTuple):
    """One request's audio and the phrases it boosts (jobs with different hotwords share a batch)."""

    samples: npt.NDArray[np.float32]
    hotwords: HotwordSet = NO_HOTWORDS


class TranscriptionRunner:
    """Micro-batched access to one engine; batches are capped by count and by seconds of audio."""

    def __init__(self, engine: Engine, policy: BatchPolicy | None = None) -> None:
        self.engine = engine
        self.batcher: MicroBatcher[Job, EngineTranscript] = MicroBatcher(
            self._run,
            policy or BatchPolicy(max_batch_size=16, max_wait_ms=5.0, max_batch_cost=30 * 60.0),
            cost=lambda job: len(job.samples) / SAMPLE_RATE,
            name="transcription-batcher",
        )

    def _run(self, jobs: Sequence[Job]) -> list[EngineTranscript]:
        """One engine call per batch; hotwords are passed only when some job has them."""
        waveforms = [job.samples for job in jobs]
        if any(job.hotwords for job in jobs):
            return self.engine.transcribe(waveforms, hotwords=[job.hotwords for job in jobs])
        return self.engine.transcribe(waveforms)

    def transcribe(
        self, samples: npt.NDArray[np.float32], context: CallContext, hotwords: HotwordSet = NO_HOTWORDS
    ) -> EngineTranscript:
        return wait_for(self.batcher.submit(Job(samples, hotwords)), context, "transcription")

    def transcribe_many(
        self,
        channels: Sequence[npt.NDArray[np.float32]],
        context: CallContext,
        hotwords: HotwordSet = NO_HOTWORDS,
    ) -> list[EngineTranscript]:
        """Several waveforms of one request (the channels of a call): queued back to back, so the
        batcher gathers them into one forward pass (within the batch's count and seconds caps)."""
        futures = [self.batcher.submit(Job(samples, hotwords)) for samples in channels]
        try:
            return [wait_for(future, context, "transcription") for future in futures]
        finally:
            for future in futures:
                future.cancel()  # a failed or abandoned request frees the batch slots it still holds

    def close(self) -> None:
        self.batcher.close()
