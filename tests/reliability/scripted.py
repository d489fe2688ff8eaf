"""Scripted stand-ins for the models: instant and deterministic, for tests where the model is not
the point (decoding, fetching, validation, merging and rendering stay the real code)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.diarization.types import ESTIMATE, Diarization, SpeakerCounts, Turn
from parakeet_server.transcription.engine import EngineTranscript, SegmentTiming, WordTiming


class ScriptedTranscriber:
    """A word every 0.4 s and a segment every 3 s of audio, at once."""

    name = "scripted-tdt"

    def transcribe(self, waveforms: Sequence[npt.NDArray[np.float32]]) -> list[EngineTranscript]:
        transcripts = []
        for samples in waveforms:
            duration = len(samples) / SAMPLE_RATE
            words = [
                WordTiming(f"w{i}", i * 0.4, i * 0.4 + 0.3, confidence=0.9)
                for i in range(int(duration / 0.4))
            ]
            segments = [
                SegmentTiming(
                    " ".join(w.word for w in words if start <= w.start < start + 3.0), start, start + 3.0
                )
                for start in np.arange(0.0, duration, 3.0)
            ]
            transcripts.append(EngineTranscript(" ".join(w.word for w in words), words, segments))
        return transcripts


class ScriptedDiarizer:
    """Speakers take one-second turns, as many as asked for (default 2)."""

    name = "scripted-pyannote"

    def diarize(
        self,
        waveform: Waveform,
        counts: SpeakerCounts = ESTIMATE,
        exclusive: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> Diarization:
        speakers = counts.clamp(2)
        seconds = math.ceil(waveform.duration)
        turns = tuple(
            Turn(float(i), min(float(i + 1), waveform.duration), f"SPEAKER_{i % speakers:02d}")
            for i in range(seconds)
            if i < waveform.duration
        )
        return Diarization(turns, len({turn.speaker for turn in turns}))


class Context:
    """A CallContext with no deadline that never goes away."""

    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        return True
