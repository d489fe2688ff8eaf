"""DiarizationConfig -> an engine and the servicer over it; the one place the pipeline is loaded
and warmed up, for the gRPC server, the RunPod worker and the orchestrator's in-process backend."""

from __future__ import annotations

from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.live import LiveLimits
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.diarization.selection import Diarizer, build_engine
from parakeet_server.diarization.servicer import DiarizationServicer


def engine_for(config: DiarizationConfig) -> Diarizer:
    """The engine the config names (pyannote, offline, or pyannote with the offline fallback); not loaded."""
    return build_engine(
        pipeline=config.pipeline,
        device=config.device,
        segmentation_batch_size=config.segmentation_batch_size,
        embedding_batch_size=config.embedding_batch_size,
        fallback=config.fallback,
    )


def build_servicer(
    engine: Diarizer, limits: AudioLimits, live_limits: LiveLimits | None = None
) -> DiarizationServicer:
    """The servicer over `engine`, enforcing the same limits as every other service (and, for
    StreamingDiarize, the live-stream limits)."""
    return DiarizationServicer(engine, limits, live_limits)


def warm_up(engine: Diarizer) -> None:
    """Load the pipeline and run one pass, so the first request is served at full speed; a load
    failure raises PreconditionFailed naming what to fix (token, gated repo, no local copy)."""
    engine.load()
    engine.warm_up()
