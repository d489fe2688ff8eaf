"""The one word-to-speaker merge: ASR words + diarization turns -> a speaker-attributed transcript.

Both the transcription servicer (split architecture: the request carries `diarization_segments`)
and the orchestrator call these functions, so a word lands on the same speaker whichever path
produced it.

Speaker choice for a word (`assign_speakers`), decided on the first rule that separates the
candidates:

1. the speaker whose turns overlap the word's [start, end] the most (total overlap; each
   speaker's turns are first merged into their union, so duplicated or touching turns of one
   speaker are not counted twice, while overlapping speech of *different* speakers is scored
   per speaker);
2. the speaker with a turn that contains the word's midpoint, turns read as half-open
   [start, end) so a point exactly on a boundary belongs to the turn that starts there;
3. the speaker whose speech is nearest in time (only matters for words in a gap between turns;
   zero for every speaker the word overlaps);
4. the speaker whose stretch of speech that overlaps (or, in a gap, is nearest to) the word
   started earlier: in overlapping speech the one who already held the floor, in a gap exactly
   halfway between two turns the turn before the word;
5. the speaker who appears first in the recording (label order of first appearance).

Times are compared at microsecond resolution, so overlaps that are equal on paper (2.3 - 1.1
versus 3.5 - 2.3) tie instead of being decided by floating-point noise. The words, segments and
utterances the merge returns carry their times rounded to the millisecond: whichever path the
words came by (this process's engine, a RunPod worker's JSON), the transcript shows 2.8, never
2.8000000000000003.

Cost is O(T log T + W * S * log T) for W words, T turns and S speakers: each speaker's turns are
a sorted list searched with `bisect`, never a words x turns loop.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from parakeet.render import distance_to_span, join_words, midpoint, time_order, words_by_segment
from parakeet.v1 import audio_pb2, orchestrator_pb2
from parakeet_server.core.times import whole_ms

_RESOLUTION = 1_000_000  # ticks per second for comparisons: one microsecond


class _HasSpeaker(Protocol):
    @property
    def speaker(self) -> str: ...


def speakers_in_order(items: Iterable[_HasSpeaker]) -> list[str]:
    """Distinct non-empty speaker labels in order of first appearance in `items`.

    Callers pass words or turns already in time order; this keeps `num_speakers` and any
    per-speaker listing stable from one run to the next.
    """
    seen: dict[str, None] = {}
    for item in items:
        if item.speaker:
            seen.setdefault(item.speaker, None)
    return list(seen)


def _ticks(seconds: float) -> int:
    """Seconds as integer microseconds, so equal-on-paper values compare equal."""
    return round(seconds * _RESOLUTION) if math.isfinite(seconds) else 0


def _span(start: float, end: float) -> tuple[int, int]:
    """[start, end] in ticks with end >= start: a reversed span is read as a point at start."""
    low = _ticks(start)
    return low, max(low, _ticks(end))


# What `assign_speakers` ranks a speaker by, larger is better field by field: overlap, contains
# the midpoint, -distance, -start of the stretch of speech used, -rank of first appearance.
_Score = tuple[int, bool, int, int, int]


@dataclass(frozen=True, slots=True)
class _Track:
    """One speaker's speech: the union of their turns as sorted, disjoint [start, end] ticks."""

    speaker: str
    rank: int
    starts: list[int]
    ends: list[int]

    def score(self, start: int, end: int) -> _Score:
        """How well this speaker explains the word [start, end] (ticks); see the module rules."""
        first = bisect_right(self.ends, start)  # first interval ending after the word starts
        overlap = 0
        index = first
        while index < len(self.starts) and self.starts[index] < end:
            overlap += min(end, self.ends[index]) - max(start, self.starts[index])
            index += 1
        midpoint = (start + end) / 2
        holder = bisect_right(self.starts, midpoint) - 1
        contains = holder >= 0 and midpoint < self.ends[holder]
        if overlap > 0 or contains:
            anchor = self.starts[first] if overlap > 0 else self.starts[holder]
            return (overlap, contains, 0, -anchor, -self.rank)
        distance, anchor = self._nearest(first, start, end)
        return (0, False, -distance, -anchor, -self.rank)

    def _nearest(self, first: int, start: int, end: int) -> tuple[int, int]:
        """(distance, interval start) of the interval nearest a word that overlaps none.

        `first` is the first interval ending after the word starts, so the one before it ends at
        or before the word. On equal distance the earlier interval wins.
        """
        candidates: list[tuple[int, int]] = []
        if first > 0:
            candidates.append((start - self.ends[first - 1], self.starts[first - 1]))
        if first < len(self.starts):
            candidates.append((max(0, self.starts[first] - end), self.starts[first]))
        return min(candidates)


def _tracks(turns: Sequence[audio_pb2.SpeakerTurn]) -> list[_Track]:
    """Per-speaker unions of turns, ranked by first appearance in time; unlabelled turns dropped."""
    ordered = sorted(
        (turn for turn in turns if turn.speaker),
        key=lambda turn: (*_span(turn.start, turn.end), turn.speaker),
    )
    intervals: dict[str, list[list[int]]] = {}
    for turn in ordered:
        start, end = _span(turn.start, turn.end)
        merged = intervals.setdefault(turn.speaker, [])
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [
        _Track(speaker, rank, [s for s, _ in spans], [e for _, e in spans])
        for rank, (speaker, spans) in enumerate(intervals.items())
    ]


def _best_speaker(tracks: Sequence[_Track], start: float, end: float) -> str:
    low, high = _span(start, end)
    return max(tracks, key=lambda track: track.score(low, high)).speaker


def assign_speakers(
    words: Sequence[audio_pb2.Word], turns: Sequence[audio_pb2.SpeakerTurn]
) -> list[audio_pb2.Word]:
    """New Word messages, in input order, each with `speaker` set by the module's rules and its
    times rounded to the millisecond.

    Inputs are left untouched (the caller may still hold the engine's raw output). Without
    labelled turns every word comes back with an empty speaker rather than a stale one.
    """
    tracks = _tracks(turns)
    result: list[audio_pb2.Word] = []
    for word in words:
        copy = audio_pb2.Word()
        copy.CopyFrom(word)
        copy.speaker = _best_speaker(tracks, word.start, word.end) if tracks else ""
        copy.start, copy.end = whole_ms(word.start), whole_ms(word.end)
        result.append(copy)
    return result


def speaker_runs(words: Sequence[audio_pb2.Word]) -> list[list[audio_pb2.Word]]:
    """Maximal runs of consecutive words with the same speaker."""
    runs: list[list[audio_pb2.Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def _segment_from_run(run: Sequence[audio_pb2.Word]) -> audio_pb2.Segment:
    return audio_pb2.Segment(
        start=whole_ms(run[0].start),
        end=whole_ms(max(max(word.start, word.end) for word in run)),
        text=join_words(run),
        speaker=run[0].speaker,
    )


@dataclass(frozen=True, slots=True)
class _WordIndex:
    """Words with speakers sorted by midpoint, to find the one nearest a segment by bisection."""

    midpoints: list[float]
    speakers: list[str]

    @classmethod
    def of(cls, words: Iterable[audio_pb2.Word]) -> _WordIndex:
        pairs = sorted((midpoint(word.start, word.end), word.speaker) for word in words if word.speaker)
        return cls([point for point, _ in pairs], [speaker for _, speaker in pairs])

    def nearest_speaker(self, start: float, end: float) -> str:
        """Speaker of the word nearest [start, end]; the earlier word on a tie, "" if none."""
        after = bisect_right(self.midpoints, start)
        candidates = [i for i in (after - 1, after) if 0 <= i < len(self.midpoints)]
        if not candidates:
            return ""
        best = min(candidates, key=lambda i: (distance_to_span(self.midpoints[i], start, end), i))
        return self.speakers[best]


def split_segments_by_speaker(
    segments: Sequence[audio_pb2.Segment], words: Sequence[audio_pb2.Word]
) -> list[audio_pb2.Segment]:
    """Segments cut wherever the speaker changes, in time order, with ids renumbered from 0.

    `words` already carry speakers (see `assign_speakers`); they are allotted to segments by
    `words_by_segment`. A segment whose words share one speaker keeps its own text and times
    (the model's punctuation and spacing survive) and takes that speaker. A segment whose words
    change speaker becomes one segment per run, with text = the run's words joined by single
    spaces and start/end from the run's first start and last end. A segment with no words keeps
    its text and times and takes the speaker of the nearest word (empty if there are no words).
    Every time is rounded to the millisecond.
    """
    index_of_words = _WordIndex.of(words)
    result: list[audio_pb2.Segment] = []
    groups = words_by_segment(segments, words)
    order = time_order(segments)
    for index in order:
        segment, group = segments[index], groups[index]
        runs = speaker_runs(group)
        if len(runs) > 1:
            result.extend(_segment_from_run(run) for run in runs)
            continue
        kept = audio_pb2.Segment()
        kept.CopyFrom(segment)
        kept.start, kept.end = whole_ms(segment.start), whole_ms(segment.end)
        kept.speaker = (
            runs[0][0].speaker if runs else index_of_words.nearest_speaker(segment.start, segment.end)
        )
        result.append(kept)
    for new_id, segment in enumerate(result):
        segment.id = new_id
    return result


def build_utterances(
    words: Sequence[audio_pb2.Word], max_pause_s: float = 1.0
) -> list[orchestrator_pb2.Utterance]:
    """Consecutive words of one speaker, in time order.

    A new utterance starts when the speaker changes or when the silence between one word's end
    and the next word's start exceeds `max_pause_s`, so a monologue with long pauses reads as
    several utterances rather than one wall of text.
    """
    utterances: list[orchestrator_pb2.Utterance] = []
    current: list[audio_pb2.Word] = []
    for word in sorted(words, key=lambda word: (word.start, word.end)):
        if current and (word.speaker != current[-1].speaker or word.start - current[-1].end > max_pause_s):
            utterances.append(_utterance(current))
            current = []
        current.append(word)
    if current:
        utterances.append(_utterance(current))
    return utterances


def _utterance(words: Sequence[audio_pb2.Word]) -> orchestrator_pb2.Utterance:
    return orchestrator_pb2.Utterance(
        start=whole_ms(words[0].start),
        end=whole_ms(max(max(word.start, word.end) for word in words)),
        speaker=words[0].speaker,
        text=join_words(words),
    )


# Multichannel (a call recording with one party per channel): each channel is transcribed on
# its own, its words and segments labelled with the channel, then everything is merged by time.


def channel_label(channel: int) -> str:
    """The speaker label of a channel's party: CHANNEL_0, CHANNEL_1, ..."""
    return f"CHANNEL_{channel}"


def channel_speaker_label(channel: int, speaker: str) -> str:
    """A speaker diarized within a channel: CHANNEL_0/SPEAKER_00 (channel first, so labels of one
    channel sort together and never collide with another channel's)."""
    return f"{channel_label(channel)}/{speaker}"


def label_channel(
    channel: int, words: Sequence[audio_pb2.Word], segments: Sequence[audio_pb2.Segment]
) -> tuple[list[audio_pb2.Word], list[audio_pb2.Segment]]:
    """Copies of one channel's words and segments carrying `channel` and the speaker CHANNEL_n."""
    speaker = channel_label(channel)
    labelled_words: list[audio_pb2.Word] = []
    for word in words:
        copy = audio_pb2.Word()
        copy.CopyFrom(word)
        copy.channel, copy.speaker = channel, speaker
        labelled_words.append(copy)
    labelled_segments: list[audio_pb2.Segment] = []
    for segment in segments:
        kept = audio_pb2.Segment()
        kept.CopyFrom(segment)
        kept.channel, kept.speaker = channel, speaker
        labelled_segments.append(kept)
    return labelled_words, labelled_segments


def split_segments_at_pauses(
    segments: Sequence[audio_pb2.Segment], words: Sequence[audio_pb2.Word], max_pause_s: float = 1.0
) -> list[audio_pb2.Segment]:
    """Segments cut where their words pause for more than `max_pause_s`, in time order.

    One channel of a call is silent while the other party talks; without punctuation a model may
    return the channel as one segment spanning the whole call, and merged with the other channel
    by time it would read as if one party said everything first. A segment without such a pause
    is kept as it is (text, punctuation, times); a cut one becomes one segment per stretch of
    words, its text the words joined."""
    result: list[audio_pb2.Segment] = []
    groups = words_by_segment(segments, words)
    for index in time_order(segments):
        stretches: list[list[audio_pb2.Word]] = []
        for word in groups[index]:
            if stretches and word.start - stretches[-1][-1].end <= max_pause_s:
                stretches[-1].append(word)
            else:
                stretches.append([word])
        if len(stretches) > 1:
            result.extend(_segment_from_run(stretch) for stretch in stretches)
        else:
            result.append(segments[index])
    return result


def merge_channels(
    words: Sequence[audio_pb2.Word], segments: Sequence[audio_pb2.Segment]
) -> tuple[list[audio_pb2.Word], list[audio_pb2.Segment], str]:
    """All channels' words and segments in time order (ties: lower channel first), segment ids
    renumbered from 0, and the transcript text: the segments' texts in that order."""
    ordered_words = sorted(words, key=lambda word: (word.start, word.end, word.channel))
    ordered_segments = sorted(segments, key=lambda segment: (segment.start, segment.end, segment.channel))
    for new_id, segment in enumerate(ordered_segments):
        segment.id = new_id
    text = " ".join(segment.text.strip() for segment in ordered_segments if segment.text.strip())
    return ordered_words, ordered_segments, text


def by_channel(words: Iterable[audio_pb2.Word]) -> dict[int, list[audio_pb2.Word]]:
    """Words grouped by channel (words without one count as channel 0), channels in order."""
    groups: dict[int, list[audio_pb2.Word]] = {}
    for word in words:
        groups.setdefault(word.channel if word.HasField("channel") else 0, []).append(word)
    return dict(sorted(groups.items()))


def build_channel_utterances(
    words: Sequence[audio_pb2.Word], max_pause_s: float = 1.0
) -> list[orchestrator_pb2.Utterance]:
    """`build_utterances` within each channel, merged by start time: one party's words are never
    cut into pieces by the other party's overlapping words (crosstalk, back-channels)."""
    utterances = [
        utterance
        for group in by_channel(words).values()
        for utterance in build_utterances(group, max_pause_s)
    ]
    return sorted(utterances, key=lambda utterance: (utterance.start, utterance.end))


def with_overlap(
    turns: Sequence[audio_pb2.SpeakerTurn], overlap: Sequence[audio_pb2.SpeakerTurn]
) -> list[audio_pb2.SpeakerTurn]:
    """An exclusive diarization's turns plus its overlap turns (DiarizeResponse.overlap_segments):
    who spoke when, two at a time where two spoke. A speaker's turns that touch or overlap
    become one, so a voice that starts under another's turn has one turn, not two."""
    if not overlap:
        return list(turns)
    merged: list[audio_pb2.SpeakerTurn] = []
    last: dict[str, audio_pb2.SpeakerTurn] = {}
    for turn in sorted([*turns, *overlap], key=lambda t: (t.start, t.end)):
        previous = last.get(turn.speaker)
        if previous is not None and turn.start <= previous.end:
            previous.end = max(previous.end, turn.end)
            continue
        copy = audio_pb2.SpeakerTurn()
        copy.CopyFrom(turn)
        merged.append(copy)
        last[turn.speaker] = copy
    return merged
