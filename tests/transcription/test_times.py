"""Times leave the transcription side rounded to the millisecond: 35 frames of 0.08 s is
2.8000000000000003 in binary floating point, and JSON would show every digit of it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format

from parakeet.v1 import audio_pb2, transcription_pb2
from parakeet_server.core.context import JobContext
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.support.audio import sweep, wav_bytes

# A JSON number with at most three decimals: what a time rounded to the millisecond prints as.
MILLISECONDS = re.compile(r"\d+(\.\d{1,3})?")


def times_in(document: dict[str, Any]) -> list[str]:
    """Every word and segment start and end, as the JSON text spells it."""
    items = [*document.get("words", []), *document.get("segments", [])]
    return [json.dumps(item.get(key, 0.0)) for item in items for key in ("start", "end")]


def test_a_transcription_s_json_times_are_whole_milliseconds(servicer: TranscriptionServicer) -> None:
    request = transcription_pb2.TranscribeRequest(
        audio=audio_pb2.Audio(content=wav_bytes(sweep(6.0, seed=11))), word_timestamps=True
    )
    response = servicer.Transcribe(request, JobContext(60.0))
    document = json_format.MessageToDict(response, preserving_proto_field_name=True)
    times = times_in(document)
    assert len(document["words"]) >= 5 and len(times) >= 12
    assert [t for t in times if not MILLISECONDS.fullmatch(t)] == []
    # The fixture's frames are 80 ms: without rounding most of these would carry binary noise.
    assert all(round(w.start * 1000) % 80 == 0 for w in response.words)


def test_the_duration_is_whole_milliseconds(servicer: TranscriptionServicer) -> None:
    """3.0001875 s of samples (48 003 at 16 kHz) is reported as 3.0."""
    samples = sweep(3.0, seed=5)
    odd = np.concatenate([samples, samples[:3]])
    request = transcription_pb2.TranscribeRequest(audio=audio_pb2.Audio(content=wav_bytes(odd)))
    response = servicer.Transcribe(request, JobContext(60.0))
    assert len(odd) == 48_003
    assert json.dumps(response.duration) == "3.0"


@pytest.fixture(scope="module")
def windowed(tdt_model_path: Path) -> TranscriptionEngine:
    engine = TranscriptionEngine(
        TranscriptionEngineConfig(model=str(tdt_model_path), window_s=10.0, window_overlap_s=2.0)
    )
    engine.load()
    return engine


def test_windowed_long_audio_times_are_whole_milliseconds(windowed: TranscriptionEngine) -> None:
    """Past one window the words come from frame offsets merged across windows, converted here."""
    transcript = windowed.transcribe([sweep(25.0, seed=4)])[0]
    times = [
        json.dumps(t) for item in (*transcript.words, *transcript.segments) for t in (item.start, item.end)
    ]
    assert len(transcript.words) >= 10
    assert max(w.end for w in transcript.words) > 10.0  # the words reach past the first window
    assert [t for t in times if not MILLISECONDS.fullmatch(t)] == []
