"""Voiceprints on the pyannote path (#19), with the random-weight speaker-diarization-3.1 look-alike
at real size: Enroll uses the pipeline's own embedding model (its class and a digest of its
weights), prints are deterministic unit vectors, an offline-made print is refused, and Diarize
names the speaker whose own speech was enrolled. Random weights tell voices apart poorly, but
identical audio embeds identically: the one speaker of the enrolled recording matches it exactly."""

from __future__ import annotations

import numpy as np
import pytest

from parakeet.v1 import audio_pb2, diarization_pb2
from parakeet_server.core.context import JobContext
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.diarization.pyannote_engine import PyannoteEngine
from parakeet_server.diarization.servicer import DiarizationServicer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servicer(engine: PyannoteEngine) -> DiarizationServicer:
    return DiarizationServicer(engine)


@pytest.fixture(scope="module")
def enrolled(servicer: DiarizationServicer, speech: bytes) -> diarization_pb2.EnrollResponse:
    request = diarization_pb2.EnrollRequest(audio=audio_pb2.Audio(content=speech), name="Alice")
    return servicer.Enroll(request, JobContext(None))


def test_enroll_uses_the_pipelines_embedding_model(
    servicer: DiarizationServicer, speech: bytes, enrolled: diarization_pb2.EnrollResponse
) -> None:
    print_ = enrolled.voiceprint
    assert print_.model == "PyannoteAudioPretrainedSpeakerEmbedding"  # the local pipeline's WeSpeaker
    assert print_.model_version.startswith("sha256:") and len(print_.model_version) == len("sha256:") + 16
    vector = np.asarray(print_.embedding)
    assert vector.shape == (256,)  # WeSpeaker ResNet34's size
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert print_.speech_seconds >= 2.0 and enrolled.duration == 12.0
    assert (enrolled.name, enrolled.model) == ("Alice", "speaker-diarization-3.1-local")
    again = servicer.Enroll(
        diarization_pb2.EnrollRequest(audio=audio_pb2.Audio(content=speech)), JobContext(None)
    )
    assert again.voiceprint == print_


def test_speech_seconds_count_overlapping_turns_once(enrolled: diarization_pb2.EnrollResponse) -> None:
    assert enrolled.voiceprint.speech_seconds <= enrolled.duration


def test_an_offline_voiceprint_is_voiceprint_mismatch(servicer: DiarizationServicer, speech: bytes) -> None:
    offline = audio_pb2.Voiceprint(
        embedding=[1.0] + [0.0] * 255,
        model="resemblyzer",
        model_version="pretrained.pt:sha256:0123456789abcdef",
    )
    request = diarization_pb2.DiarizeRequest(
        audio=audio_pb2.Audio(content=speech),
        known_speakers=[audio_pb2.KnownSpeaker(name="Bob", voiceprint=offline)],
    )
    with pytest.raises(PreconditionFailed, match=r"was made by resemblyzer pretrained\.pt:sha256:") as error:
        servicer.Diarize(request, JobContext(None))
    assert error.value.reason == "VOICEPRINT_MISMATCH"
    assert (
        "this server embeds voices with PyannoteAudioPretrainedSpeakerEmbedding sha256:"
        in error.value.message
    )


def test_diarize_names_the_speaker_whose_speech_was_enrolled(
    servicer: DiarizationServicer, speech: bytes, enrolled: diarization_pb2.EnrollResponse
) -> None:
    request = diarization_pb2.DiarizeRequest(
        audio=audio_pb2.Audio(content=speech),
        num_speakers=1,
        known_speakers=[audio_pb2.KnownSpeaker(name="Alice", voiceprint=enrolled.voiceprint)],
    )
    answer = servicer.Diarize(request, JobContext(None))
    assert [(i.speaker, i.name) for i in answer.speaker_identities] == [("Alice", "Alice")]
    assert answer.speaker_identities[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert answer.segments and {turn.speaker for turn in answer.segments} == {"Alice"}
    assert answer.num_speakers == 1
