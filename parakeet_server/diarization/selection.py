"""Which diarization engine serves: pyannote, the offline backend, or pyannote with the offline
backend as an explicit fallback. The one place engines are built (servers, RunPod handlers, the
in-process orchestrator and the embedded CLI all come through `build_engine`).

The fallback is opt-in (`--fallback-offline`, DIARIZATION_FALLBACK=offline): a deployment that
expects pyannote's accuracy must fail loudly (FAILED_PRECONDITION naming the repos to fix) rather
than quietly serve worse speaker turns. When it is on and pyannote cannot load, a WARNING says
why, and every response's `model` names the offline backend and the pipeline it stands in for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from parakeet_server.core.audio import Waveform
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.diarization.offline_engine import OFFLINE_NAME, OFFLINE_PIPELINE, OfflineEngine
from parakeet_server.diarization.pyannote_engine import DEFAULT_PIPELINE, PyannoteEngine
from parakeet_server.diarization.types import ESTIMATE, Diarization, SpeakerCounts

log = logging.getLogger(__name__)

FALLBACKS = ("none", OFFLINE_PIPELINE)


class Diarizer(Protocol):
    """What the servicer needs of an engine; PyannoteEngine and OfflineEngine are two."""

    @property
    def name(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def warm_up(self) -> None: ...

    def diarize(
        self,
        waveform: Waveform,
        counts: SpeakerCounts = ESTIMATE,
        exclusive: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> Diarization: ...


class OfflineFallback:
    """A pyannote engine that, when it cannot load, hands over to the offline backend with a warning.

    Any PreconditionFailed from pyannote's load counts: weights missing offline, no token, gated
    repos not accepted, a download failure, an unreadable pipeline config. The message of that
    error is in the warning. Once loaded, the choice is fixed for the life of the process.
    """

    def __init__(self, primary: PyannoteEngine) -> None:
        self.primary = primary
        self.offline = OfflineEngine(
            device=primary.device, name=f"{OFFLINE_NAME} (fallback for {primary.name})"
        )
        self._active: PyannoteEngine | OfflineEngine = primary
        self._lock = threading.Lock()

    @property
    def active(self) -> PyannoteEngine | OfflineEngine:
        """The engine that answers: pyannote until its load has failed, then the offline backend."""
        return self._active

    @property
    def name(self) -> str:
        return self._active.name

    @property
    def loaded(self) -> bool:
        return self._active.loaded

    def load(self) -> None:
        with self._lock:
            if self._active.loaded:
                return
            try:
                self.primary.load()
            except PreconditionFailed as error:
                log.warning(
                    "%s unavailable (%s): using the offline silero-vad+resemblyzer backend; "
                    "speaker accuracy is lower",
                    self.primary.name,
                    error.message,
                )
                self.offline.load()
                self._active = self.offline

    def warm_up(self) -> None:
        self._active.warm_up()

    def diarize(
        self,
        waveform: Waveform,
        counts: SpeakerCounts = ESTIMATE,
        exclusive: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> Diarization:
        return self._active.diarize(waveform, counts, exclusive, should_stop)


def build_engine(
    pipeline: str = DEFAULT_PIPELINE,
    device: str = "auto",
    segmentation_batch_size: int = 32,
    embedding_batch_size: int = 32,
    fallback: str = "none",
) -> Diarizer:
    """The engine for these options: `pipeline` "offline" is the offline backend; anything else
    is a pyannote pipeline, wrapped in OfflineFallback when `fallback` is "offline"."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}, not {fallback!r}")
    if pipeline == OFFLINE_PIPELINE:
        return OfflineEngine(device=device)
    engine = PyannoteEngine(
        pipeline=pipeline,
        device=device,
        segmentation_batch_size=segmentation_batch_size,
        embedding_batch_size=embedding_batch_size,
    )
    return OfflineFallback(engine) if fallback == OFFLINE_PIPELINE else engine
