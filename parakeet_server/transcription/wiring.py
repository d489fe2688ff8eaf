"""TranscriptionConfig -> a servicer ready to be warmed up; shared by the gRPC server, the RunPod
worker and the orchestrator's in-process backend (which is why no gRPC server module is imported)."""

from __future__ import annotations

from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.transcription.config import TranscriptionConfig, streaming_setting
from parakeet_server.transcription.engine import TranscriptionEngine
from parakeet_server.transcription.live import LiveTranscription
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from parakeet_server.transcription.streaming import StreamingTranscriber
from parakeet_server.transcription.streaming_config import StreamingConfigError


def build_servicer(config: TranscriptionConfig) -> TranscriptionServicer:
    """The engine (not loaded yet), its micro-batcher, the live sessions when streaming is on (their
    model not loaded yet either) and the servicer enforcing `config.limits`."""
    engine = TranscriptionEngine(config.engine)
    runner = TranscriptionRunner(engine, config.batch)
    live = live_transcription(engine, config) if config.streaming_enabled else None
    return TranscriptionServicer(runner, config.limits, live=live, live_limits=config.live_limits)


def live_transcription(engine: TranscriptionEngine, config: TranscriptionConfig) -> LiveTranscription:
    """StreamingTranscribe's sessions on the engine's checkpoint and device (their own model copy:
    NeMo's streaming pipeline reconfigures the model it is given)."""

    def load() -> StreamingTranscriber:
        try:
            return StreamingTranscriber.for_engine(engine, config.streaming)
        except StreamingConfigError as error:  # sizes off this model's frame grid
            raise PreconditionFailed(f"live streaming is misconfigured: {streaming_setting(error)}") from None

    return LiveTranscription(load, engine.name)


def warm_up(servicer: TranscriptionServicer) -> None:
    """Load the model and run one pass, once, and load the streaming model, so neither the first
    request nor the first stream waits; health says SERVING only after this returns. A servicer
    over another engine (a test double) has nothing to load."""
    engine = servicer.runner.engine
    if isinstance(engine, TranscriptionEngine) and not engine.loaded:
        engine.load()
        engine.warm_up()
    if servicer.live is not None:
        servicer.live.load()
