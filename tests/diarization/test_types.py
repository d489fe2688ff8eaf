"""The shared diarization types: speaker counts checked once, and turns rounded to the millisecond
where they are made."""

from __future__ import annotations

import pytest

from parakeet_server.core.errors import InvalidRequest
from parakeet_server.diarization.types import Diarization, SpeakerCounts, Turn, diarization_from_segments


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (
            {"num_speakers": 0},
            "num_speakers must be at least 1 (got 0); leave it unset to let the model estimate",
        ),
        ({"max_speakers": 101}, "max_speakers must be at most 100 (got 101)"),
        (
            {"min_speakers": 3, "max_speakers": 2},
            "min_speakers (3) must not be greater than max_speakers (2)",
        ),
        (
            {"num_speakers": 5, "max_speakers": 3},
            "num_speakers (5) is above max_speakers (3); set one or the other",
        ),
        (
            {"num_speakers": 1, "min_speakers": 2},
            "num_speakers (1) is below min_speakers (2); set one or the other",
        ),
    ],
)
def test_impossible_counts_cannot_be_made(counts, message) -> None:
    with pytest.raises(InvalidRequest) as refused:
        SpeakerCounts(**counts)
    assert refused.value.message == message
    assert refused.value.reason == "INVALID_FIELD"


@pytest.mark.parametrize(
    ("counts", "estimate", "used"),
    [
        (SpeakerCounts(), 3, 3),
        (SpeakerCounts(), 0, 1),
        (SpeakerCounts(num_speakers=5), 2, 5),
        (SpeakerCounts(min_speakers=4), 3, 4),
        (SpeakerCounts(max_speakers=2), 3, 2),
        (SpeakerCounts(min_speakers=2, max_speakers=5), 3, 3),
        (SpeakerCounts(min_speakers=2, max_speakers=5), 7, 5),
    ],
)
def test_clamp_uses_the_exact_count_or_bounds_the_estimate(counts, estimate, used) -> None:
    assert counts.clamp(estimate) == used


def test_segments_become_ms_turns_in_time_order_labelled_by_first_appearance() -> None:
    segments = [
        (35 * 0.08, 3.3, "cluster-0"),  # 2.8000000000000003
        (0.1 + 0.2, 1.0, "cluster-7"),  # 0.30000000000000004
        (2.5, 3.4, "cluster-7"),  # runs past the audio: clipped
        (3.2, 3.5, "cluster-9"),  # wholly past the audio: dropped, not counted
        (1.0001, 1.0004, "cluster-3"),  # empty at millisecond precision: dropped
    ]
    assert diarization_from_segments(segments, duration=3.0) == Diarization(
        (
            Turn(0.3, 1.0, "SPEAKER_00"),
            Turn(2.5, 3.0, "SPEAKER_00"),
            Turn(2.8, 3.0, "SPEAKER_01"),
        ),
        2,
    )
    assert diarization_from_segments([], duration=3.0) == Diarization((), 0)
