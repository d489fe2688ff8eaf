"""What a transcription service is built from: the engine, its micro-batching and the limits.

The gRPC server (flags over these values) and the RunPod worker (`from_env`) build the same
value, so both configure the engine the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.settings import ConfigError, Env, audio_limits, device, one_of, real, whole
from parakeet_server.transcription.engine import TranscriptionEngineConfig

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_BATCH = BatchPolicy(max_batch_size=16, max_wait_ms=5.0)


@dataclass(frozen=True)
class TranscriptionConfig:
    """The engine (not loaded yet), how requests share a forward pass, and what a request may be."""

    engine: TranscriptionEngineConfig = field(default_factory=TranscriptionEngineConfig)
    batch: BatchPolicy = DEFAULT_BATCH
    limits: AudioLimits = field(default_factory=AudioLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TranscriptionConfig:
        """TRANSCRIPTION_MODEL, TRANSCRIPTION_DEVICE, ... and MAX_AUDIO_SECONDS; unset ones keep their defaults."""
        env = Env(environ)
        engine = TranscriptionEngineConfig()
        window_s = env.get("TRANSCRIPTION_WINDOW_S", engine.window_s, real(minimum=1))
        overlap_s = env.get("TRANSCRIPTION_WINDOW_OVERLAP_S", engine.window_overlap_s, real(minimum=0))
        model = env.text("TRANSCRIPTION_MODEL", engine.model)
        on = env.get("TRANSCRIPTION_DEVICE", engine.device, device)
        precision = env.get("TRANSCRIPTION_PRECISION", engine.precision, one_of(PRECISIONS))
        # 0, like unset, means the engine's choice (1 on CPU, 4 on a GPU).
        window_batch_size = env.get("TRANSCRIPTION_WINDOW_BATCH_SIZE", 0, whole(minimum=0)) or None
        try:
            engine = TranscriptionEngineConfig(
                model=model,
                device=on,
                precision=precision,
                window_s=window_s,
                window_overlap_s=overlap_s,
                window_batch_size=window_batch_size,
            )
        except ValueError as error:  # the window and its overlap do not fit together
            raise ConfigError(
                f"TRANSCRIPTION_WINDOW_S={window_s:g}, TRANSCRIPTION_WINDOW_OVERLAP_S={overlap_s:g}: {error}"
            ) from None
        return cls(
            engine=engine,
            batch=BatchPolicy(
                max_batch_size=env.get(
                    "TRANSCRIPTION_MAX_BATCH_SIZE", DEFAULT_BATCH.max_batch_size, whole(minimum=1)
                ),
                max_wait_ms=env.get(
                    "TRANSCRIPTION_MAX_BATCH_WAIT_MS", DEFAULT_BATCH.max_wait_ms, real(minimum=0)
                ),
            ),
            limits=audio_limits(env),
        )
