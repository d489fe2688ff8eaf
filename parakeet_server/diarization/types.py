"""What every diarization engine takes and gives, with no model library behind it.

`SpeakerCounts` is what a request says about the number of speakers (checked once, here), and
`Diarization` the turns an engine found. Both engines (pyannote and the offline backend), the
selection wrapper and the servicer share these, so the offline path needs no pyannote type.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from parakeet_server.core.errors import InvalidRequest
from parakeet_server.core.times import whole_ms

# More speakers than this is a typo, not a meeting; clustering that many would take minutes.
MAX_SPEAKERS = 100


class Turn(NamedTuple):
    """One speaker turn: seconds from the start of the audio (millisecond precision) and a label."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class Diarization:
    """Turns in time order and the number of distinct speakers among them."""

    turns: tuple[Turn, ...]
    num_speakers: int


@dataclass(frozen=True)
class SpeakerCounts:
    """How many speakers to find; None means "estimate". Impossible values are InvalidRequest,
    raised when the value is made, so no engine ever sees them."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is None:
                continue
            if value < 1:
                raise InvalidRequest(
                    f"{name} must be at least 1 (got {value}); leave it unset to let the model estimate",
                    reason="INVALID_FIELD",
                )
            if value > MAX_SPEAKERS:
                raise InvalidRequest(
                    f"{name} must be at most {MAX_SPEAKERS} (got {value})", reason="INVALID_FIELD"
                )
        low, high, exact = self.min_speakers, self.max_speakers, self.num_speakers
        if low is not None and high is not None and low > high:
            raise InvalidRequest(
                f"min_speakers ({low}) must not be greater than max_speakers ({high})",
                reason="INVALID_FIELD",
            )
        if exact is not None and low is not None and exact < low:
            raise InvalidRequest(
                f"num_speakers ({exact}) is below min_speakers ({low}); set one or the other",
                reason="INVALID_FIELD",
            )
        if exact is not None and high is not None and exact > high:
            raise InvalidRequest(
                f"num_speakers ({exact}) is above max_speakers ({high}); set one or the other",
                reason="INVALID_FIELD",
            )

    def clamp(self, estimate: int) -> int:
        """The number of speakers to use when `estimate` were found: num_speakers when set,
        else the estimate within [min_speakers, max_speakers]."""
        if self.num_speakers is not None:
            return self.num_speakers
        at_least = max(estimate, self.min_speakers or 1)
        return at_least if self.max_speakers is None else min(at_least, self.max_speakers)


# The default of every diarize(...): let the engine estimate the count.
ESTIMATE = SpeakerCounts()


def diarization_from_segments(
    segments: Iterable[tuple[float, float, Hashable]], duration: float
) -> Diarization:
    """Labelled (start, end, label) segments in seconds -> a Diarization; how every engine ends.

    Times are rounded to the millisecond here, where turns are made, so no response shows a
    float artefact such as 2.8000000000000003. Turns are put in time order and their labels
    renamed SPEAKER_00, SPEAKER_01, ... by first appearance (engines number speakers by cluster
    index). Turns are clipped to the audio's `duration` (pyannote zero-pads audio shorter than
    its window, and turns can run into the padding); one left empty is dropped.
    """
    labels: dict[Hashable, str] = {}
    turns = []
    end_of_audio = whole_ms(duration)
    for raw_start, raw_end, label in sorted(segments, key=lambda segment: (segment[0], segment[1])):
        start, end = whole_ms(float(raw_start)), min(whole_ms(float(raw_end)), end_of_audio)
        if end <= start:
            continue
        speaker = labels.setdefault(label, f"SPEAKER_{len(labels):02d}")
        turns.append(Turn(start, end, speaker))
    return Diarization(tuple(turns), len(labels))
