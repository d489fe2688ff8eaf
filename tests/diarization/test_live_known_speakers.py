"""Known speakers named live (StreamingDiarize): a matched speaker's turns carry its name from its
first turn on, an unmatched one keeps SPEAKER_NN, labels never change, the summary carries the
identities; bad voiceprints, names and thresholds are refused before any audio flows.

The offline backend runs on a synthesized two-voice conversation, each voice enrolled from other
sentences (eval.voiceprints.enrolment_audio); pyannote runs on the random-weight fixture pipeline
(plumbing only: its similarities mean nothing).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from eval import synth
from eval.voiceprints import enrolment_audio, word_speakers
from parakeet.v1 import audio_pb2, diarization_pb2, streaming_pb2
from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed
from parakeet_server.diarization.live_names import NamingParams
from parakeet_server.diarization.offline_engine import OfflineEngine
from parakeet_server.diarization.pyannote_engine import PyannoteEngine
from parakeet_server.diarization.servicer import DiarizationServicer
from parakeet_server.diarization.types import Diarization
from parakeet_server.diarization.voiceprints import OfflineEmbedder, PyannoteEmbedder, enroll
from tests.diarization.test_live import Collected as LiveCollected

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

Response = diarization_pb2.StreamingDiarizeResponse
CHUNK = SAMPLE_RATE // 10
SEED = 7400  # development seeds 7400-7404: 99.3 % of the enrolled voice's words named right


class Collected(LiveCollected):
    """test_live's collecting output, with the summary at hand."""

    @property
    def summary(self) -> streaming_pb2.StreamingSummary:
        return self.responses[-1].summary


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def offline() -> DiarizationServicer:
    engine = OfflineEngine(device="cpu")
    engine.load()
    return DiarizationServicer(engine)


@pytest.fixture(scope="module")
def talk() -> synth.Conversation:
    return synth.conversation(SEED, 2, 16)


@pytest.fixture(scope="module")
def prints(offline: DiarizationServicer, talk: synth.Conversation) -> dict[str, audio_pb2.Voiceprint]:
    """Voiceprints of the conversation's voices (spk0, spk1) and of a voice not in it ("absent")."""
    embedder = OfflineEmbedder(offline._engine)
    voices = {**talk.voices, "absent": next(v for v in synth.VOICES if v not in talk.voices.values())}
    return {
        name: enroll(embedder, enrolment_audio(voice, SEED * 31 + index))
        for index, (name, voice) in enumerate(voices.items())
    }


def stream(
    servicer: DiarizationServicer, audio: np.ndarray, config: streaming_pb2.StreamingConfig
) -> Collected:
    output = Collected()
    session = servicer.open_session(config, output)  # type: ignore[arg-type]
    for offset in range(0, audio.size, CHUNK):
        session.feed(audio[offset : offset + CHUNK])
    session.finish()
    assert output.ends == [None]
    return output


def named(name: str, voiceprint: audio_pb2.Voiceprint) -> audio_pb2.KnownSpeaker:
    return audio_pb2.KnownSpeaker(name=name, voiceprint=voiceprint)


def test_an_enrolled_voice_is_named_live_and_one_not_enrolled_keeps_speaker_nn(
    offline: DiarizationServicer, talk: synth.Conversation, prints: dict[str, audio_pb2.Voiceprint]
) -> None:
    known = [named("Alice", prints["spk0"]), named("Zoe", prints["absent"])]
    output = stream(offline, talk.audio, streaming_pb2.StreamingConfig(known_speakers=known))
    labels = word_speakers(talk, Diarization(tuple(output.turns), 0))
    alice = Counter(label for speaker, label in labels if speaker == "spk0")
    other = Counter(label for speaker, label in labels if speaker == "spk1")
    assert alice["Alice"] >= 0.9 * sum(alice.values()), alice
    # (a word the diarizer puts in the other voice's turn, at a change of speaker, may say Alice)
    assert other["Alice"] <= 0.05 * sum(other.values()) and not other["Zoe"], other
    assert max(other, key=lambda label: other[label]).startswith("SPEAKER_0"), other
    # A label is given once: the speakers in the summary are exactly the labels sent.
    sent = list(dict.fromkeys(turn.speaker for turn in output.turns))
    summary = output.summary
    assert sorted(summary.speakers) == sorted(sent) and "Alice" in sent and "Zoe" not in sent
    identities = {identity.speaker: identity for identity in summary.speaker_identities}
    assert set(identities) == set(sent)
    # Named at the threshold, or within NamingParams.slack of it with a clear lead over every other voice.
    floor = OfflineEmbedder.default_threshold - NamingParams().slack
    assert identities["Alice"].name == "Alice" and identities["Alice"].similarity >= floor
    unnamed = [identity for label, identity in identities.items() if label != "Alice"]
    assert unnamed and all(identity.name == "" and identity.similarity < floor for identity in unnamed)
    # processed_seconds never goes back, and no turn is sent before it is decided.
    seconds = [r.processed_seconds for r in output.responses]
    assert seconds == sorted(seconds)
    starts = [r.turn.start for r in output.responses if r.WhichOneof("event") == "turn"]
    assert starts == sorted(starts)


def test_two_enrolled_voices_get_their_own_names_never_the_same(
    offline: DiarizationServicer, talk: synth.Conversation, prints: dict[str, audio_pb2.Voiceprint]
) -> None:
    known = [named("Bob", prints["spk1"]), named("Alice", prints["spk0"])]
    output = stream(offline, talk.audio, streaming_pb2.StreamingConfig(known_speakers=known))
    labels = word_speakers(talk, Diarization(tuple(output.turns), 0))
    for speaker, name in (("spk0", "Alice"), ("spk1", "Bob")):
        words = [label for reference, label in labels if reference == speaker]
        assert words.count(name) >= 0.9 * len(words), (speaker, Counter(words))
    names = [identity.name for identity in output.summary.speaker_identities if identity.name]
    assert sorted(names) == ["Alice", "Bob"]


def test_without_known_speakers_the_stream_is_unchanged(
    offline: DiarizationServicer, talk: synth.Conversation
) -> None:
    audio = talk.audio[: 12 * SAMPLE_RATE]
    output = stream(offline, audio, streaming_pb2.StreamingConfig())
    assert output.turns and all(turn.speaker.startswith("SPEAKER_") for turn in output.turns)
    assert list(output.summary.speaker_identities) == []


@pytest.mark.parametrize(
    ("known", "threshold", "reason", "words"),
    [
        ([audio_pb2.KnownSpeaker(name="SPEAKER_01")], None, "INVALID_FIELD", "looks like an unmatched"),
        ([audio_pb2.KnownSpeaker(name="Ann")], None, "INVALID_FIELD", "neither a voiceprint nor reference"),
        ([], 1.5, "INVALID_FIELD", "speaker_match_threshold must be within [-1, 1]"),
    ],
)
def test_bad_names_and_thresholds_are_refused_before_audio(
    offline: DiarizationServicer,
    known: list[audio_pb2.KnownSpeaker],
    threshold: float | None,
    reason: str,
    words: str,
) -> None:
    config = streaming_pb2.StreamingConfig(known_speakers=known, speaker_match_threshold=threshold)
    with pytest.raises(InvalidRequest) as raised:
        offline.open_session(config, Collected())  # type: ignore[arg-type]
    assert raised.value.reason == reason and words in raised.value.message


def test_a_voiceprint_of_another_model_is_refused_before_audio(
    offline: DiarizationServicer, prints: dict[str, audio_pb2.Voiceprint]
) -> None:
    other = audio_pb2.Voiceprint()
    other.CopyFrom(prints["spk0"])
    other.model_version = "pretrained.pt:sha256:0000000000000000"
    output = Collected()
    config = streaming_pb2.StreamingConfig(known_speakers=[named("Alice", other)])
    with pytest.raises(PreconditionFailed) as raised:
        offline.open_session(config, output)  # type: ignore[arg-type]
    assert raised.value.reason == "VOICEPRINT_MISMATCH" and "enrol the speaker again" in raised.value.message
    assert output.responses == []


# -- pyannote (random-weight fixture: plumbing) --------------------------------------------


@pytest.fixture(scope="module")
def pyannote_servicer(pyannote_pipeline_path: Any) -> DiarizationServicer:
    engine = PyannoteEngine(str(pyannote_pipeline_path), device="cpu")
    engine.load()
    return DiarizationServicer(engine)


def test_pyannote_live_names_with_its_own_embedding_model_and_refuses_the_offline_ones(
    pyannote_servicer: DiarizationServicer, talk: synth.Conversation, prints: dict[str, audio_pb2.Voiceprint]
) -> None:
    audio = talk.audio[: 20 * SAMPLE_RATE]
    with pytest.raises(PreconditionFailed) as raised:
        pyannote_servicer.open_session(
            streaming_pb2.StreamingConfig(known_speakers=[named("Alice", prints["spk0"])]),
            Collected(),  # type: ignore[arg-type]
        )
    assert raised.value.reason == "VOICEPRINT_MISMATCH"
    own = enroll(PyannoteEmbedder(pyannote_servicer._engine), enrolment_audio(talk.voices["spk0"], SEED))
    # Threshold -1: any similarity matches, so the first speaker checked takes the one name.
    config = streaming_pb2.StreamingConfig(known_speakers=[named("Alice", own)], speaker_match_threshold=-1.0)
    output = stream(pyannote_servicer, audio, config)
    summary = output.summary
    assert output.turns and len(summary.speaker_identities) == summary.num_speakers
    named_ = [identity for identity in summary.speaker_identities if identity.name]
    assert [identity.name for identity in named_] == ["Alice"] and named_[0].speaker == "Alice"
    assert "Alice" in summary.speakers and "Alice" in {turn.speaker for turn in output.turns}
