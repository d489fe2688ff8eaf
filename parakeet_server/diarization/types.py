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
    """Turns in time order and the number of distinct speakers among them.

    `overlap` is what an exclusive diarization leaves out: a second speaker's speech during
    another speaker's turn (DiarizeResponse.overlap_segments); empty when `turns` may overlap.
    """

    turns: tuple[Turn, ...]
    num_speakers: int
    overlap: tuple[Turn, ...] = ()


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


Segment = tuple[float, float, Hashable]


def diarization_from_segments(
    segments: Iterable[Segment], duration: float, overlap: Iterable[Segment] = ()
) -> Diarization:
    """Labelled (start, end, label) segments in seconds -> a Diarization; how every engine ends.

    Times are rounded to the millisecond here, where turns are made, so no response shows a
    float artefact such as 2.8000000000000003. Turns are put in time order and their labels
    renamed SPEAKER_00, SPEAKER_01, ... by first appearance (engines number speakers by cluster
    index); `overlap` segments (an exclusive diarization's second speakers) share the names.
    Turns are clipped to the audio's `duration` (pyannote zero-pads audio shorter than its
    window, and turns can run into the padding); one left empty is dropped.
    """
    labels: dict[Hashable, str] = {}
    end_of_audio = whole_ms(duration)

    def turns_of(found: Iterable[Segment]) -> tuple[Turn, ...]:
        turns = []
        for raw_start, raw_end, label in sorted(found, key=lambda segment: (segment[0], segment[1])):
            start, end = whole_ms(float(raw_start)), min(whole_ms(float(raw_end)), end_of_audio)
            if end <= start:
                continue
            speaker = labels.setdefault(label, f"SPEAKER_{len(labels):02d}")
            turns.append(Turn(start, end, speaker))
        return tuple(turns)

    turns = turns_of(segments)
    second = turns_of(overlap)
    return Diarization(turns, len(labels), second)


def carry_overlap(before: Diarization, after: Diarization) -> Diarization:
    """`after` (a renaming of `before`'s turns, e.g. by voiceprint) with `before`'s overlap
    turns renamed alike: each old label becomes the new label it spends most of its time under."""
    if not before.overlap:
        return after
    shared: dict[str, dict[str, float]] = {}
    later = sorted(after.turns)
    first = 0  # before.turns come in start order: turns of `later` ended before one starts stay behind
    for turn in before.turns:
        while first < len(later) and later[first].end <= turn.start:
            first += 1
        for other in later[first:]:
            if other.start >= turn.end:
                break
            common = min(turn.end, other.end) - max(turn.start, other.start)
            if common > 0:
                counts = shared.setdefault(turn.speaker, {})
                counts[other.speaker] = counts.get(other.speaker, 0.0) + common
    renamed = {old: max(counts, key=lambda label: counts[label]) for old, counts in shared.items()}
    overlap = tuple(Turn(t.start, t.end, renamed.get(t.speaker, t.speaker)) for t in before.overlap)
    return Diarization(after.turns, after.num_speakers, overlap)
