"""Known speakers by voiceprint on the offline backend: Enroll, naming in Diarize, refusals, accuracy.

The voices are espeak's (eval.synth); each is enrolled from sentences that are not in the
conversation, as a user enrols from another recording.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from eval import synth
from eval.voiceprints import enrolment_audio
from parakeet.v1 import audio_pb2, diarization_pb2
from parakeet_server.core.audio import Waveform
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed
from parakeet_server.diarization.offline_engine import OfflineEngine
from parakeet_server.diarization.servicer import DiarizationServicer
from parakeet_server.diarization.types import Diarization, Turn
from parakeet_server.diarization.voiceprints import (
    KnownVoice,
    OfflineEmbedder,
    assign,
    identify,
    name_groups,
    relabel,
)
from tests.diarization.test_offline_engine import wav_bytes

pytestmark = pytest.mark.espeak

SEED = 4242  # not eval.voiceprints' seeds: the tests' conversation is none of the measured ones
THRESHOLD = OfflineEmbedder.default_threshold  # CAM++ + resemblyzer's


class Alive:
    """A call context that stays active and has no deadline."""

    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        return True


@pytest.fixture(scope="module")
def servicer() -> DiarizationServicer:
    engine = OfflineEngine(device="cpu")
    engine.load()
    return DiarizationServicer(engine)


@pytest.fixture(scope="module")
def talk() -> synth.Conversation:
    return synth.conversation(SEED, 3, 9, overlap_probability=0.0)


def enrolment_wav(voice: synth.Voice, seed: int = SEED) -> bytes:
    return wav_bytes(enrolment_audio(voice, seed).samples)


def enrol(
    servicer: DiarizationServicer, voice: synth.Voice, name: str = ""
) -> diarization_pb2.EnrollResponse:
    request = diarization_pb2.EnrollRequest(audio=audio_pb2.Audio(content=enrolment_wav(voice)), name=name)
    return servicer.Enroll(request, Alive())


@pytest.fixture(scope="module")
def prints(servicer: DiarizationServicer, talk: synth.Conversation) -> dict[str, audio_pb2.Voiceprint]:
    """Voiceprints of the conversation's voices (spk0..) and of one voice not in it ("absent")."""
    result = {name: enrol(servicer, voice, name).voiceprint for name, voice in talk.voices.items()}
    absent = next(v for v in synth.VOICES if v not in talk.voices.values())
    result["absent"] = enrol(servicer, absent).voiceprint
    return result


def diarize(
    servicer: DiarizationServicer,
    talk: synth.Conversation,
    known: list[audio_pb2.KnownSpeaker],
    **fields: float,
) -> diarization_pb2.DiarizeResponse:
    request = diarization_pb2.DiarizeRequest(
        audio=audio_pb2.Audio(content=wav_bytes(talk.audio)), known_speakers=known, num_speakers=3, **fields
    )
    return servicer.Diarize(request, Alive())


def named(name: str, voiceprint: audio_pb2.Voiceprint) -> audio_pb2.KnownSpeaker:
    return audio_pb2.KnownSpeaker(name=name, voiceprint=voiceprint)


def test_enroll_makes_a_unit_voiceprint_tagged_with_the_model(servicer: DiarizationServicer) -> None:
    answer = enrol(servicer, synth.VOICES[0], "Alice")
    vector = np.asarray(answer.voiceprint.embedding)
    assert vector.shape == (192 + 256,)  # CAM++'s embedding and resemblyzer's, each half the weight
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert abs(float(np.linalg.norm(vector[:192])) - np.sqrt(0.5)) < 1e-4
    assert answer.voiceprint.model == "campplus+resemblyzer"
    assert re.fullmatch(
        r"campplus_cn_en_common\.pt:sha256:[0-9a-f]{16}\+pretrained\.pt:sha256:[0-9a-f]{16}",
        answer.voiceprint.model_version,
    )
    assert 8.0 <= answer.voiceprint.speech_seconds <= answer.duration <= 20.5
    assert answer.name == "Alice"
    assert answer.model == "offline-silero-vad-resemblyzer"
    again = enrol(servicer, synth.VOICES[0])  # stateless and deterministic
    assert list(again.voiceprint.embedding) == list(answer.voiceprint.embedding)


@pytest.mark.parametrize("seconds", [0.0, 1.0])
def test_too_little_speech_is_audio_too_short(servicer: DiarizationServicer, seconds: float) -> None:
    clip = synth.synthesize("hello world", synth.VOICES[1])[: int(seconds * 16000)]
    audio = np.concatenate([np.zeros(16000, np.float32), clip, np.zeros(16000, np.float32)])
    request = diarization_pb2.EnrollRequest(audio=audio_pb2.Audio(content=wav_bytes(audio)))
    with pytest.raises(
        InvalidRequest, match=r"holds \d\.\d s of speech; a voiceprint needs at least 2 s"
    ) as error:
        servicer.Enroll(request, Alive())
    assert error.value.reason == "AUDIO_TOO_SHORT"


def test_enrolled_speakers_are_named_and_the_others_keep_speaker_nn(
    servicer: DiarizationServicer, talk: synth.Conversation, prints: dict[str, audio_pb2.Voiceprint]
) -> None:
    known = [named("Alice", prints["spk0"]), named("Bob", prints["spk1"]), named("Zed", prints["absent"])]
    answer = diarize(servicer, talk, known)
    by_speaker = {identity.speaker: identity for identity in answer.speaker_identities}
    assert set(by_speaker) == {turn.speaker for turn in answer.segments}
    assert by_speaker["Alice"].name == "Alice" and by_speaker["Bob"].name == "Bob"
    assert by_speaker["Alice"].similarity >= THRESHOLD and by_speaker["Bob"].similarity >= THRESHOLD
    others = [identity for identity in answer.speaker_identities if not identity.name]
    assert len(others) == 1 and re.fullmatch(r"SPEAKER_0[0-2]", others[0].speaker)  # spk2: not enrolled
    assert others[0].similarity < THRESHOLD
    assert "Zed" not in by_speaker
    # Each reference turn's middle lies in a found turn carrying its speaker's name (spk2: unnamed).
    expected = {"spk0": "Alice", "spk1": "Bob", "spk2": others[0].speaker}
    for turn in talk.turns:
        middle = (turn.start + turn.end) / 2
        labels = {found.speaker for found in answer.segments if found.start <= middle < found.end}
        assert labels == {expected[turn.speaker]}, turn
    assert answer.num_speakers == 3


def test_reference_audio_is_enrolled_on_the_fly(
    servicer: DiarizationServicer, talk: synth.Conversation, prints: dict[str, audio_pb2.Voiceprint]
) -> None:
    reference = audio_pb2.Audio(content=enrolment_wav(talk.voices["spk2"]))
    known = [named("Alice", prints["spk0"]), audio_pb2.KnownSpeaker(name="Carol", reference=reference)]
    answer = diarize(servicer, talk, known)
    assert sorted(identity.name for identity in answer.speaker_identities) == ["", "Alice", "Carol"]


def test_a_high_threshold_names_nobody(
    servicer: DiarizationServicer, talk: synth.Conversation, prints: dict[str, audio_pb2.Voiceprint]
) -> None:
    answer = diarize(servicer, talk, [named("Alice", prints["spk0"])], speaker_match_threshold=0.999)
    assert {turn.speaker for turn in answer.segments} == {"SPEAKER_00", "SPEAKER_01", "SPEAKER_02"}
    assert [identity.name for identity in answer.speaker_identities] == ["", "", ""]
    assert max(identity.similarity for identity in answer.speaker_identities) >= THRESHOLD


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {"model_version": "campplus_cn_en_common.pt:sha256:0000000000000000"},
            "made by campplus\\+resemblyzer campplus_cn_en_common.pt:sha256:0000",
        ),
        (  # a voiceprint of the offline backend before CAM++: enrol again
            {"model": "resemblyzer", "model_version": "pretrained.pt:sha256:0123456789abcdef"},
            "made by resemblyzer pretrained.pt:sha256:0123456789abcdef, but this server embeds voices "
            "with campplus\\+resemblyzer campplus_cn_en_common.pt:sha256:",
        ),
        (
            {"model": "pyannote/wespeaker-voxceleb-resnet34-LM"},
            "made by pyannote/wespeaker-voxceleb-resnet34-LM",
        ),
    ],
)
def test_a_voiceprint_of_another_model_is_voiceprint_mismatch(
    servicer: DiarizationServicer,
    talk: synth.Conversation,
    prints: dict[str, audio_pb2.Voiceprint],
    change: dict[str, str],
    says: str,
) -> None:
    foreign = audio_pb2.Voiceprint()
    foreign.CopyFrom(prints["spk0"])
    for field, value in change.items():
        setattr(foreign, field, value)
    with pytest.raises(PreconditionFailed, match=says) as error:
        diarize(servicer, talk, [named("Bob", prints["spk1"]), named("Alice", foreign)])
    assert error.value.reason == "VOICEPRINT_MISMATCH"
    assert "known_speakers[1] (Alice)" in error.value.message
    assert "enrol the speaker again on this server" in error.value.message


@pytest.mark.parametrize(
    ("known", "says"),
    [
        ([("Alice", True), ("Alice", True)], r"known_speakers\[1\].name 'Alice' is given twice"),
        ([(" ", True)], r"known_speakers\[0\].name is empty"),
        ([("SPEAKER_01", True)], "looks like an unmatched speaker's label"),
        ([("Alice", False)], r"known_speakers\[0\] \(Alice\) has neither a voiceprint nor reference audio"),
    ],
)
def test_bad_known_speakers_are_invalid_field(
    servicer: DiarizationServicer,
    talk: synth.Conversation,
    prints: dict[str, audio_pb2.Voiceprint],
    known: list[tuple[str, bool]],
    says: str,
) -> None:
    speakers = [
        named(name, prints["spk0"]) if has_voice else audio_pb2.KnownSpeaker(name=name)
        for name, has_voice in known
    ]
    with pytest.raises(InvalidRequest, match=says) as error:
        diarize(servicer, talk, speakers)
    assert error.value.reason == "INVALID_FIELD"


def test_an_out_of_range_threshold_is_invalid_field(
    servicer: DiarizationServicer, talk: synth.Conversation
) -> None:
    with pytest.raises(InvalidRequest, match=r"within \[-1, 1\] \(a cosine similarity\), got 1.5"):
        diarize(servicer, talk, [], speaker_match_threshold=1.5)


def test_optimal_assignment_never_gives_one_name_twice() -> None:
    # Both speakers are closest to known voice 0; greedy would give it to both (or starve speaker 1).
    similarity = np.array([[0.97, 0.96], [0.98, 0.90]])
    assert assign(similarity, 0.95) == {0: 1, 1: 0}
    assert assign(similarity, 0.965) == {1: 0}  # the optimal pair under the threshold is dropped
    assert assign(np.array([[0.99], [0.98]]), 0.5) == {0: 0}


def _turn_units(*spans: tuple[float, float, str]) -> list[Turn]:
    return [Turn(start, end, speaker) for start, end, speaker in spans]


def test_relabel_moves_only_confident_units() -> None:
    # Voices: 0 = Alice, 1 = Bob. SPEAKER_00 matched Alice as a whole; SPEAKER_01 matched nobody.
    units = _turn_units(
        (0.0, 3.0, "SPEAKER_00"),  # Alice's own speech: stays Alice
        (3.0, 6.0, "SPEAKER_00"),  # Bob merged into Alice's cluster: best Bob, above 0.94 - 0.04
        (6.0, 6.5, "SPEAKER_00"),  # Bob again but too short to trust
        (7.0, 9.0, "SPEAKER_01"),  # unnamed speaker, Bob best by 0.03 only (< 0.05): keeps SPEAKER_01
        (9.0, 12.0, "SPEAKER_01"),  # unnamed speaker, Bob best by 0.2: Bob
        (12.0, 15.0, "SPEAKER_00"),  # Bob best but under the unit threshold (0.89 < 0.90)
        (15.0, 18.0, "SPEAKER_01"),  # no usable speech
    )
    similarity = np.array(
        [[0.95, 0.80], [0.85, 0.93], [0.80, 0.97], [0.88, 0.91], [0.72, 0.92], [0.70, 0.89], [-1.0, -1.0]]
    )
    assert relabel(units, similarity, {"SPEAKER_00": 0}, 0.94) == [0, 1, 0, None, 1, 0, None]
    assert relabel(units, similarity, {"SPEAKER_00": 0}, 0.999) == [0, 0, 0, None, None, 0, None]
    assert relabel(units, np.zeros((len(units), 0)), {}, 0.94) == [None] * len(units)


def test_name_groups_names_an_unnamed_speakers_units_that_agree_on_a_free_voice() -> None:
    alice, bob, carol, noise_a, noise_b = np.eye(5)
    known = np.stack([alice, bob])

    def unit(vector: np.ndarray) -> np.ndarray:
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    units = _turn_units(
        (0.0, 3.0, "SPEAKER_00"),  # Alice, named by its speaker
        (3.0, 6.0, "SPEAKER_01"),  # Bob, noisy: 0.928 alone, with the next one 0.962 (>= 0.94 + 0.01)
        (6.0, 9.0, "SPEAKER_01"),
        (9.0, 9.5, "SPEAKER_01"),  # Bob but too short to count
        (10.0, 13.0, "SPEAKER_02"),  # Carol (not enrolled), closest to Bob: 0.78 jointly
        (13.0, 16.0, "SPEAKER_02"),
        (16.0, 19.0, "SPEAKER_03"),  # Alice's voice, but Alice's name is already carried
        (19.0, 22.0, "SPEAKER_03"),  # no usable speech
    )
    vectors = [
        unit(alice),
        unit(bob + 0.4 * noise_a),
        unit(bob + 0.4 * noise_b),
        unit(bob),
        unit(bob + 0.8 * carol),
        unit(bob + 0.8 * carol),
        unit(alice),
        None,
    ]
    columns: list[int | None] = [0, None, None, None, None, None, None, None]
    named, scores = name_groups(units, vectors, known, columns, 0.94)
    assert named == [0, 1, 1, None, None, None, None, None]
    assert list(scores) == [1] and scores[1] == pytest.approx(2 / np.sqrt(4.32), abs=1e-6)
    # The same groups under a higher threshold stay unnamed; without known voices nothing changes.
    assert name_groups(units, vectors, known, columns, 0.96)[0] == columns
    assert name_groups(units, vectors, np.zeros((0, 5)), columns, 0.94) == (columns, {})


class _HandMade:
    """An embedder whose voices are hand-made unit vectors, one per second of 'audio'."""

    model = "hand-made"
    model_version = "1"
    default_threshold = 0.94

    def __init__(self, voice_at: list[np.ndarray]) -> None:
        self._voice_at = voice_at

    def speech(self, waveform: Waveform) -> list[tuple[float, float]]:
        return [(0.0, float(len(self._voice_at)))]

    def embed(self, waveform: Waveform, groups: Sequence[Sequence[tuple[float, float]]]) -> list[Any]:
        result = []
        for spans in groups:
            seconds = [s for start, end in spans for s in range(int(start), int(np.ceil(end - 1e-9)))]
            total = np.sum([self._voice_at[s] for s in seconds], axis=0)
            result.append((total / np.linalg.norm(total)).astype(np.float32))
        return result


def test_identify_splits_a_merged_speaker_and_reports_one_identity_per_label() -> None:
    alice, bob, carol = np.eye(3, dtype=np.float32)
    # 0-6 s Alice, 6-12 s Bob, all one found speaker; 12-15 s Carol (not enrolled).
    embedder = _HandMade([alice] * 6 + [bob] * 6 + [carol] * 3)
    found = Diarization((Turn(0.0, 12.0, "SPEAKER_00"), Turn(12.0, 15.0, "SPEAKER_01")), 2)
    voices = [KnownVoice("Alice", alice), KnownVoice("Bob", bob)]
    # The merged speaker scores 0.707 with both: under the threshold as a whole, so only units name it.
    result = identify(embedder, Waveform(np.zeros(15 * 16000, np.float32)), found, voices)
    assert result.diarization.turns == (
        Turn(0.0, 6.0, "Alice"),
        Turn(6.0, 12.0, "Bob"),
        Turn(12.0, 15.0, "SPEAKER_01"),
    )
    assert result.diarization.num_speakers == 3
    assert [(i.speaker, i.name, i.similarity) for i in result.identities] == [
        ("Alice", "Alice", 1.0),
        ("Bob", "Bob", 1.0),
        ("SPEAKER_01", "", 0.0),
    ]


def test_an_undecodable_reference_says_whose_it_is(
    servicer: DiarizationServicer, talk: synth.Conversation, prints: dict[str, audio_pb2.Voiceprint]
) -> None:
    reference = audio_pb2.Audio(content=b"this is not audio")
    known = [named("Alice", prints["spk0"]), audio_pb2.KnownSpeaker(name="Carol", reference=reference)]
    with pytest.raises(InvalidRequest) as error:
        diarize(servicer, talk, known)
    assert error.value.message.startswith("the reference audio of known_speakers[1] (Carol): ")
    assert error.value.reason == "AUDIO_UNDECODABLE"
