"""What a transcription service is built from: the engine, its micro-batching, live streaming and the limits.

The gRPC server (flags over these values) and the RunPod worker (`from_env`) build the same
value, so both configure the engine the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.live import LiveLimits
from parakeet_server.core.settings import (
    ConfigError,
    Env,
    audio_limits,
    device,
    live_limits,
    one_of,
    real,
    whole,
)
from parakeet_server.transcription.engine import TranscriptionEngineConfig
from parakeet_server.transcription.streaming_config import (
    MIN_ENDPOINT_SILENCE_MS,
    StreamingConfig,
    StreamingConfigError,
)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_BATCH = BatchPolicy(max_batch_size=16, max_wait_ms=5.0)
# The variable that sets each StreamingConfig field, so a refusal names what to change.
STREAMING_VARIABLES = {
    "chunk_s": "TRANSCRIPTION_STREAMING_CHUNK_S",
    "left_context_s": "TRANSCRIPTION_STREAMING_LEFT_CONTEXT_S",
    "right_context_s": "TRANSCRIPTION_STREAMING_RIGHT_CONTEXT_S",
    "endpoint_silence_ms": "TRANSCRIPTION_STREAMING_ENDPOINT_SILENCE_MS",
    "max_batch_streams": "TRANSCRIPTION_STREAMING_MAX_BATCH_STREAMS",
}
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def switch(raw: str) -> bool:
    """On or off: 1/true/yes/on or 0/false/no/off (any case)."""
    value = raw.lower()
    if value in _ON or value in _OFF:
        return value in _ON
    raise ValueError(f"expected one of {', '.join(_ON)} (on) or {', '.join(_OFF)} (off)")


def streaming_setting(error: StreamingConfigError) -> ConfigError:
    """A streaming setting's refusal as a ConfigError naming the variable that sets it."""
    variable = STREAMING_VARIABLES.get(error.setting, error.setting)
    return ConfigError(f"{variable}: {error.detail}")


@dataclass(frozen=True)
class TranscriptionConfig:
    """The engine (not loaded yet), how requests share a forward pass, and what a request may be."""

    engine: TranscriptionEngineConfig = field(default_factory=TranscriptionEngineConfig)
    batch: BatchPolicy = DEFAULT_BATCH
    limits: AudioLimits = field(default_factory=AudioLimits)
    # StreamingTranscribe: on by default, on its own copy of the model (loaded at warm-up).
    streaming_enabled: bool = True
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    live_limits: LiveLimits = field(default_factory=LiveLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TranscriptionConfig:
        """TRANSCRIPTION_MODEL, TRANSCRIPTION_DEVICE, ..., TRANSCRIPTION_STREAMING_*, MAX_AUDIO_SECONDS
        and the live-stream limits; unset ones keep their defaults."""
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
            streaming_enabled=env.get("TRANSCRIPTION_STREAMING", True, switch),
            streaming=streaming_config(env),
            live_limits=live_limits(env),
        )


def streaming_config(env: Env) -> StreamingConfig:
    """The TRANSCRIPTION_STREAMING_* sizes; a combination NeMo would get wrong is a ConfigError."""
    default = StreamingConfig()
    names = STREAMING_VARIABLES
    try:
        return StreamingConfig(
            chunk_s=env.get(names["chunk_s"], default.chunk_s, real(above=0)),
            left_context_s=env.get(names["left_context_s"], default.left_context_s, real(above=0)),
            right_context_s=env.get(names["right_context_s"], default.right_context_s, real(above=0)),
            endpoint_silence_ms=env.get(
                names["endpoint_silence_ms"],
                default.endpoint_silence_ms,
                whole(minimum=MIN_ENDPOINT_SILENCE_MS),
            ),
            max_batch_streams=env.get(
                names["max_batch_streams"], default.max_batch_streams, whole(minimum=1)
            ),
        )
    except StreamingConfigError as error:
        raise streaming_setting(error) from None
