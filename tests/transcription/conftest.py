"""Fixtures for the transcription tests: one loaded engine and a reference model per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from parakeet_server.core.batching import BatchPolicy
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer


@pytest.fixture(scope="session")
def engine(tdt_model_path: Path) -> TranscriptionEngine:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(tdt_model_path)))
    engine.load()
    engine.warm_up()
    return engine


@pytest.fixture(scope="session")
def reference_model(tdt_model_path: Path) -> Any:
    """The fixture restored straight through NeMo, with its stock decoding config."""
    from nemo.collections.asr.models import ASRModel

    model = ASRModel.restore_from(str(tdt_model_path), map_location="cpu")
    return model.eval()


def reference_words(
    model: Any, samples: npt.NDArray[np.float32]
) -> tuple[str, list[tuple[str, float, float]]]:
    """Text and (word, start, end) from a direct `model.transcribe(timestamps=True)`, its times
    rounded to the millisecond as the engine rounds them."""
    hypothesis = model.transcribe([samples], timestamps=True, verbose=False)[0]
    words = hypothesis.timestamp["word"]
    return hypothesis.text, [(w["word"], round(w["start"], 3), round(w["end"], 3)) for w in words]


@pytest.fixture
def servicer(engine: TranscriptionEngine) -> Iterator[TranscriptionServicer]:
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=8, max_wait_ms=20.0))
    yield TranscriptionServicer(runner)
    runner.close()
