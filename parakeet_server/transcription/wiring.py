"""TranscriptionConfig -> a servicer ready to be warmed up; shared by the gRPC server, the RunPod
worker and the orchestrator's in-process backend (which is why no gRPC server module is imported)."""

from __future__ import annotations

from parakeet_server.transcription.config import TranscriptionConfig
from parakeet_server.transcription.engine import TranscriptionEngine
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer


def build_servicer(config: TranscriptionConfig) -> TranscriptionServicer:
    """The engine (not loaded yet), its micro-batcher and the servicer enforcing `config.limits`."""
    runner = TranscriptionRunner(TranscriptionEngine(config.engine), config.batch)
    return TranscriptionServicer(runner, config.limits)


def warm_up(servicer: TranscriptionServicer) -> None:
    """Load the model and run one pass, once; health says SERVING only after this returns.
    A servicer over another engine (a test double) has nothing to load."""
    engine = servicer.runner.engine
    if isinstance(engine, TranscriptionEngine) and not engine.loaded:
        engine.load()
        engine.warm_up()
