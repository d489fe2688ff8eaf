"""Orchestrate hands known speakers to diarization as given and returns its speaker identities;
known speakers without diarize are refused before any backend is called (scripted backends: they
stand in for the services, not for a model; the naming itself is tested in
tests/diarization/test_voiceprints.py)."""

from __future__ import annotations

import pytest

from parakeet.v1 import audio_pb2, diarization_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.errors import InvalidRequest
from tests.orchestrator.test_servicer import Scripted, diarization, orchestrate

ALICE = audio_pb2.KnownSpeaker(
    name="Alice",
    voiceprint=audio_pb2.Voiceprint(embedding=[0.6, 0.8], model="resemblyzer", model_version="v1"),
)


class Naming(Scripted):
    """Diarization that names SPEAKER_00 Alice, as the diarization service answers with a match."""

    def diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        super().diarize(request, context)
        response = diarization()
        for turn in response.segments:
            turn.speaker = "Alice" if turn.speaker == "SPEAKER_00" else turn.speaker
        response.speaker_identities.extend(
            [
                audio_pb2.SpeakerIdentity(speaker="Alice", name="Alice", similarity=0.97),
                audio_pb2.SpeakerIdentity(speaker="SPEAKER_01", similarity=0.41),
            ]
        )
        return response


def test_known_speakers_reach_diarization_and_identities_come_back() -> None:
    scripted = Naming()
    response = orchestrate(scripted, diarize=True, known_speakers=[ALICE], speaker_match_threshold=0.9)
    (sent,) = scripted.diarize_requests
    assert list(sent.known_speakers) == [ALICE]
    assert sent.HasField("speaker_match_threshold") and sent.speaker_match_threshold == 0.9
    assert [(i.speaker, i.name, i.similarity) for i in response.speaker_identities] == [
        ("Alice", "Alice", 0.97),
        ("SPEAKER_01", "", 0.41),
    ]
    assert {word.speaker for word in response.words} <= {"Alice", "SPEAKER_01"}
    assert "Alice" in {utterance.speaker for utterance in response.utterances}


def test_no_threshold_stays_unset_for_the_engine_default() -> None:
    scripted = Naming()
    orchestrate(scripted, diarize=True, known_speakers=[ALICE])
    assert not scripted.diarize_requests[0].HasField("speaker_match_threshold")


def test_known_speakers_without_diarize_are_refused_before_any_backend() -> None:
    scripted = Scripted()
    with pytest.raises(InvalidRequest) as caught:
        orchestrate(scripted, known_speakers=[ALICE])
    assert caught.value.reason == "INVALID_FIELD"
    assert "set diarize=true" in str(caught.value)
    assert scripted.transcribe_requests == [] and scripted.diarize_requests == []
