"""StreamingOrchestrate with known speakers, in process over the real engines (tiny TDT, offline
diarization): the enrolled voice's finals carry its name, the other voice's keep SPEAKER_NN, the
summary carries speaker_identities; known_speakers without diarize and a voiceprint of another
model are refused with their reasons before any final (speakers_optional does not hide a mismatch).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from eval import synth
from eval.voiceprints import enrolment_audio
from parakeet.v1 import audio_pb2, orchestrator_pb2, streaming_pb2
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed
from parakeet_server.diarization.live_names import NamingParams
from parakeet_server.diarization.voiceprints import OfflineEmbedder, enroll
from parakeet_server.orchestrator.handler import _JobCall
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from tests.orchestrator.test_streaming_orchestrate import engines, in_process  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

Request = orchestrator_pb2.StreamingOrchestrateRequest
Response = orchestrator_pb2.StreamingOrchestrateResponse
RATE = 16_000
SEED = 7400
F32 = streaming_pb2.StreamingAudioFormat(
    encoding=streaming_pb2.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=RATE, channels=1
)


@pytest.fixture(scope="module")
def talk() -> synth.Conversation:
    return synth.conversation(SEED, 2, 16)


@pytest.fixture(scope="module")
def servicer(engines: tuple[Any, Any]) -> OrchestratorServicer:  # noqa: F811
    return OrchestratorServicer(in_process(engines))


@pytest.fixture(scope="module")
def alice(engines: tuple[Any, Any], talk: synth.Conversation) -> audio_pb2.KnownSpeaker:  # noqa: F811
    embedder = OfflineEmbedder(getattr(engines[1]._engine, "active", engines[1]._engine))
    voiceprint = enroll(embedder, enrolment_audio(talk.voices["spk0"], SEED * 31))
    return audio_pb2.KnownSpeaker(name="Alice", voiceprint=voiceprint)


def _requests(config: streaming_pb2.StreamingConfig, audio: np.ndarray) -> Iterator[Request]:
    yield Request(config=config)
    for start in range(0, audio.size, RATE // 2):
        yield Request(audio=audio[start : start + RATE // 2].astype("<f4").tobytes())


def run(
    servicer: OrchestratorServicer, config: streaming_pb2.StreamingConfig, audio: np.ndarray
) -> list[Response]:
    config.audio_format.CopyFrom(F32)
    return list(servicer.StreamingOrchestrate(_requests(config, audio), _JobCall()))  # type: ignore[arg-type]


def test_the_enrolled_voice_is_named_in_its_finals_and_the_other_keeps_speaker_nn(
    servicer: OrchestratorServicer, talk: synth.Conversation, alice: audio_pb2.KnownSpeaker
) -> None:
    config = streaming_pb2.StreamingConfig(diarize=True, interim_results=False, known_speakers=[alice])
    responses = run(servicer, config, talk.audio)
    finals = [r.final_result for r in responses if r.WhichOneof("event") == "final_result"]
    # Each reference word's voice from its time: spk0's words should say Alice, spk1's SPEAKER_NN.
    by_voice: dict[str, list[str]] = {"spk0": [], "spk1": []}
    for final in finals:
        for word in final.words:
            middle = (word.start + word.end) / 2
            turn = min(
                talk.turns,
                key=lambda t: (
                    0 if t.start <= middle < t.end else min(abs(t.start - middle), abs(t.end - middle))
                ),
            )
            by_voice[turn.speaker].append(word.speaker)
    assert by_voice["spk0"].count("Alice") >= 0.85 * len(by_voice["spk0"]), by_voice["spk0"]
    assert by_voice["spk1"].count("Alice") <= 0.1 * len(by_voice["spk1"]), by_voice["spk1"]
    assert all(s.startswith("SPEAKER_0") for s in by_voice["spk1"] if s != "Alice")
    assert all(final.speaker == final.words[0].speaker for final in finals if final.words)
    summary = responses[-1].summary
    assert "Alice" in summary.speakers and summary.num_speakers == len(summary.speakers)
    identities = {identity.speaker: identity for identity in summary.speaker_identities}
    assert identities["Alice"].name == "Alice" and identities["Alice"].similarity >= (
        OfflineEmbedder.default_threshold - NamingParams().slack
    )
    assert [identity.name for identity in identities.values() if identity.name] == ["Alice"]


def test_known_speakers_without_diarize_are_refused(
    servicer: OrchestratorServicer, talk: synth.Conversation, alice: audio_pb2.KnownSpeaker
) -> None:
    config = streaming_pb2.StreamingConfig(known_speakers=[alice])
    with pytest.raises(InvalidRequest) as raised:
        run(servicer, config, talk.audio[:RATE])
    assert raised.value.reason == "INVALID_FIELD" and "set diarize=true" in raised.value.message


@pytest.mark.parametrize("speakers_optional", [False, True])
def test_a_voiceprint_of_another_model_fails_the_stream_even_with_speakers_optional(
    servicer: OrchestratorServicer,
    talk: synth.Conversation,
    alice: audio_pb2.KnownSpeaker,
    speakers_optional: bool,
) -> None:
    stranger = audio_pb2.KnownSpeaker()
    stranger.CopyFrom(alice)
    stranger.voiceprint.model = "ecapa"
    config = streaming_pb2.StreamingConfig(
        diarize=True, speakers_optional=speakers_optional, known_speakers=[stranger]
    )
    with pytest.raises(PreconditionFailed) as raised:
        run(servicer, config, talk.audio[: 2 * RATE])
    assert raised.value.reason == "VOICEPRINT_MISMATCH" and "ecapa" in raised.value.message
