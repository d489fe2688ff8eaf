"""What a diarization service is built from: the pipeline, where it runs, and the limits.

The gRPC server (flags over these values) and the RunPod worker (`from_env`) build the same value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.live import LiveLimits
from parakeet_server.core.settings import Env, audio_limits, device, live_limits, one_of, whole
from parakeet_server.diarization.pyannote_engine import DEFAULT_PIPELINE
from parakeet_server.diarization.selection import FALLBACKS


@dataclass(frozen=True)
class DiarizationConfig:
    """The engine `selection.build_engine` makes, and the limits the servicer enforces.

    `pipeline` is a Hub id or a local directory, or "offline" for the silero-vad+resemblyzer
    backend; `fallback` "offline" serves with that backend when the pipeline cannot be loaded.
    """

    pipeline: str = DEFAULT_PIPELINE
    device: str = "auto"
    segmentation_batch_size: int = 32
    embedding_batch_size: int = 32
    fallback: str = "none"
    limits: AudioLimits = field(default_factory=AudioLimits)
    live_limits: LiveLimits = field(default_factory=LiveLimits)  # StreamingDiarize

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DiarizationConfig:
        """DIARIZATION_PIPELINE, DIARIZATION_DEVICE, ..., MAX_AUDIO_SECONDS and the live-stream limits
        (STREAM_IDLE_TIMEOUT_S, MAX_STREAM_SECONDS); unset ones keep their defaults."""
        env = Env(environ)
        default = cls()
        return cls(
            pipeline=env.text("DIARIZATION_PIPELINE", default.pipeline),
            device=env.get("DIARIZATION_DEVICE", default.device, device),
            segmentation_batch_size=env.get(
                "DIARIZATION_SEGMENTATION_BATCH_SIZE", default.segmentation_batch_size, whole(minimum=1)
            ),
            embedding_batch_size=env.get(
                "DIARIZATION_EMBEDDING_BATCH_SIZE", default.embedding_batch_size, whole(minimum=1)
            ),
            fallback=env.get("DIARIZATION_FALLBACK", default.fallback, one_of(FALLBACKS)),
            limits=audio_limits(env),
            live_limits=live_limits(env),
        )
