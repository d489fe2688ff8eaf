"""Orchestrator logic over scripted backends: concurrency, merge, formats, errors.

The backends here return fixed messages (they stand in for the two services, not for a model);
end-to-end runs over the real fixture models live in test_architectures.py.
"""

from __future__ import annotations

import threading
import time

import pytest
import webvtt

from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, transcription_pb2
from parakeet_server.core.context import CallContext, JobContext
from parakeet_server.core.errors import InvalidRequest, ServiceUnavailable
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer

WORDS = [("Hello", 0.0, 0.4), ("there.", 0.5, 0.9), ("Hi", 1.6, 1.8), ("back.", 1.9, 2.3), ("Bye.", 4.5, 4.9)]
TURNS = [(0.0, 1.0, "SPEAKER_00"), (1.5, 2.5, "SPEAKER_01"), (4.4, 5.0, "SPEAKER_00")]


def transcript() -> transcription_pb2.TranscribeResponse:
    return transcription_pb2.TranscribeResponse(
        text="Hello there. Hi back. Bye.",
        words=[audio_pb2.Word(word=w, start=s, end=e) for w, s, e in WORDS],
        segments=[
            audio_pb2.Segment(id=0, start=0.0, end=2.3, text="Hello there. Hi back."),
            audio_pb2.Segment(id=1, start=4.5, end=4.9, text="Bye."),
        ],
        duration=5.0,
        language="en",
        model="parakeet-tdt-0.6b-v2",
    )


def diarization() -> diarization_pb2.DiarizeResponse:
    return diarization_pb2.DiarizeResponse(
        segments=[audio_pb2.SpeakerTurn(start=s, end=e, speaker=spk) for s, e, spk in TURNS],
        num_speakers=2,
        duration=5.0,
        model="pyannote/speaker-diarization-3.1",
    )


class Scripted:
    def __init__(self, delay_s: float = 0.0, diarize_error: Exception | None = None) -> None:
        self.delay_s = delay_s
        self.diarize_error = diarize_error
        self.diarize_requests: list[diarization_pb2.DiarizeRequest] = []
        self.transcribe_requests: list[transcription_pb2.TranscribeRequest] = []
        self.lock = threading.Lock()

    def transcribe(self, request: transcription_pb2.TranscribeRequest, context: CallContext):
        with self.lock:
            self.transcribe_requests.append(request)
        time.sleep(self.delay_s)
        return transcript()

    def diarize(self, request: diarization_pb2.DiarizeRequest, context: CallContext):
        with self.lock:
            self.diarize_requests.append(request)
        time.sleep(self.delay_s)
        if self.diarize_error is not None:
            raise self.diarize_error
        return diarization()

    def servicer(self) -> OrchestratorServicer:
        return OrchestratorServicer(InProcessBackends(self.transcribe, self.diarize, lambda: None))


AUDIO = audio_pb2.Audio(uri="https://example.com/call.wav")


def orchestrate(scripted: Scripted, **fields) -> orchestrator_pb2.OrchestrateResponse:
    fields.setdefault("audio", AUDIO)
    return scripted.servicer().Orchestrate(orchestrator_pb2.OrchestrateRequest(**fields), JobContext(30.0))


def test_diarization_and_transcription_run_concurrently() -> None:
    """Each backend waits until the other has started too: called one after the other, the first
    would wait alone until the barrier breaks. No wall-clock bound for a busy machine to miss."""
    scripted = Scripted()
    both_started = threading.Barrier(2, timeout=10.0)

    def transcribe(request: transcription_pb2.TranscribeRequest, context: CallContext):
        both_started.wait()
        return scripted.transcribe(request, context)

    def diarize(request: diarization_pb2.DiarizeRequest, context: CallContext):
        both_started.wait()
        return scripted.diarize(request, context)

    servicer = OrchestratorServicer(InProcessBackends(transcribe, diarize, lambda: None))
    response = servicer.Orchestrate(
        orchestrator_pb2.OrchestrateRequest(audio=AUDIO, diarize=True), JobContext(30.0)
    )
    assert not both_started.broken
    assert (len(scripted.transcribe_requests), len(scripted.diarize_requests)) == (1, 1)
    assert {segment.speaker for segment in response.segments} == {"SPEAKER_00", "SPEAKER_01"}


def test_words_segments_and_utterances_carry_speakers() -> None:
    response = orchestrate(Scripted(), diarize=True, word_timestamps=True)
    assert [(w.word, w.speaker) for w in response.words] == [
        ("Hello", "SPEAKER_00"),
        ("there.", "SPEAKER_00"),
        ("Hi", "SPEAKER_01"),
        ("back.", "SPEAKER_01"),
        ("Bye.", "SPEAKER_00"),
    ]
    assert [(s.id, s.text, s.speaker, s.start, s.end) for s in response.segments] == [
        (0, "Hello there.", "SPEAKER_00", 0.0, 0.9),
        (1, "Hi back.", "SPEAKER_01", 1.6, 2.3),
        (2, "Bye.", "SPEAKER_00", 4.5, 4.9),
    ]
    assert [(u.speaker, u.text, u.start, u.end) for u in response.utterances] == [
        ("SPEAKER_00", "Hello there.", 0.0, 0.9),
        ("SPEAKER_01", "Hi back.", 1.6, 2.3),
        ("SPEAKER_00", "Bye.", 4.5, 4.9),
    ]
    assert response.num_speakers == 2
    assert len(response.speaker_turns) == 3
    assert response.model == "parakeet-tdt-0.6b-v2 + pyannote/speaker-diarization-3.1"


def test_backends_get_the_url_and_exclusive_turns_are_requested() -> None:
    scripted = Scripted()
    orchestrate(scripted, diarize=True, num_speakers=2, language="en")
    (diarize,) = scripted.diarize_requests
    (transcribe,) = scripted.transcribe_requests
    assert diarize.audio.uri == transcribe.audio.uri == "https://example.com/call.wav"
    assert diarize.exclusive and diarize.num_speakers == 2 and not diarize.HasField("min_speakers")
    assert transcribe.word_timestamps and transcribe.language == "en"


def test_diarize_false_skips_diarization() -> None:
    scripted = Scripted()
    response = orchestrate(scripted, diarize=False, word_timestamps=True)
    assert scripted.diarize_requests == []
    assert {w.speaker for w in response.words} == {""}
    assert list(response.utterances) == [] and response.num_speakers == 0
    assert response.model == "parakeet-tdt-0.6b-v2"


def test_vtt_has_voice_tags_and_text_is_a_script() -> None:
    vtt = orchestrate(Scripted(), diarize=True, response_format=audio_pb2.RESPONSE_FORMAT_VTT).document
    assert [(c.voice, c.text) for c in webvtt.from_string(vtt)] == [
        ("SPEAKER_00", "Hello there."),
        ("SPEAKER_01", "Hi back."),
        ("SPEAKER_00", "Bye."),
    ]
    text = orchestrate(Scripted(), diarize=True, response_format=audio_pb2.RESPONSE_FORMAT_TEXT).document
    assert text == "SPEAKER_00: Hello there.\nSPEAKER_01: Hi back.\nSPEAKER_00: Bye.\n"


def test_rttm_needs_diarize() -> None:
    with pytest.raises(InvalidRequest, match="set diarize=true"):
        orchestrate(Scripted(), response_format=audio_pb2.RESPONSE_FORMAT_RTTM)
    rttm = orchestrate(Scripted(), diarize=True, response_format=audio_pb2.RESPONSE_FORMAT_RTTM).document
    assert rttm.splitlines()[1] == "SPEAKER audio 1 1.500 1.000 <NA> <NA> SPEAKER_01 <NA> <NA>"


def test_missing_audio_is_invalid_before_any_backend_call() -> None:
    scripted = Scripted()
    with pytest.raises(InvalidRequest, match="audio is required"):
        orchestrate(scripted, audio=audio_pb2.Audio(), diarize=True)
    assert scripted.transcribe_requests == [] and scripted.diarize_requests == []


def test_a_failing_diarization_backend_fails_the_call_with_its_reason() -> None:
    scripted = Scripted(
        diarize_error=ServiceUnavailable("diarization backend unavailable: connection refused")
    )
    with pytest.raises(ServiceUnavailable, match="diarization backend unavailable"):
        orchestrate(scripted, diarize=True)


def test_speakers_optional_turns_a_diarization_failure_into_a_warning() -> None:
    scripted = Scripted(
        diarize_error=ServiceUnavailable("diarization backend unavailable: connection refused")
    )
    response = orchestrate(scripted, diarize=True, speakers_optional=True, word_timestamps=True)
    assert response.text == "Hello there. Hi back. Bye."
    assert {w.speaker for w in response.words} == {""}
    assert list(response.warnings) == [
        "speakers are missing: diarization failed (UNAVAILABLE: diarization backend unavailable: connection refused)"
    ]
    assert response.num_speakers == 0 and list(response.utterances) == []


def test_speakers_optional_still_fails_on_the_callers_own_mistakes() -> None:
    scripted = Scripted(diarize_error=InvalidRequest("num_speakers must be at least 1"))
    with pytest.raises(InvalidRequest, match="num_speakers must be at least 1"):
        orchestrate(scripted, diarize=True, speakers_optional=True)
