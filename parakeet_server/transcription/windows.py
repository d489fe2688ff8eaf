"""Long recordings as overlapping windows, and the windows' words merged back into one transcript.

Pure planning and merging, no model: the engine transcribes the windows (memory bounded by the
window, not by the recording) and hands their words here. Units are encoder frames (80 ms for
parakeet: a 10 ms hop subsampled 8x). Windows start on frame boundaries, so a word's frame
offsets within its window plus the window's first frame are its offsets in the recording: the
same integers a single pass would report, turned into seconds by the same arithmetic.

A seam is the overlap of two neighbouring windows. Its cut is the point of the overlap's middle
half, nearest the middle, that is clear of every word of both windows (by a frame of slack, as
two readings of one word may differ by that much): every word then falls wholly on one side in
both readings and is kept exactly once, from the left window before the cut and from the right
window after it. Where speech leaves no such point, the cut near the fewest words is taken and
the words around it, from both windows (a cluster grown, within the overlap, until no other word
comes near it), are kept from one window only: the one that sees the cluster farther from its
edge, i.e. with more context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Side = Literal["left", "right"]


@dataclass(frozen=True)
class Window:
    """Frames [start, end) of the recording."""

    start: int
    end: int


@dataclass(frozen=True)
class FrameWord:
    """A word with its start and end in encoder frames of the recording."""

    word: str
    start: int
    end: int
    confidence: float | None = None


@dataclass(frozen=True)
class Seam:
    """Where two neighbouring windows hand over.

    A clean cut (`owner` None) has `cut_start == cut_end`: each word sits on the side of its
    midpoint. Otherwise words overlapping (cut_start, cut_end) are taken from `owner` only, and the
    others by their midpoint against the span's.
    """

    cut_start: int
    cut_end: int
    owner: Side | None = None


def plan_windows(total: int, length: int, overlap: int) -> list[Window]:
    """Windows of `length` frames covering [0, total), neighbours overlapping by at least `overlap`.

    One window when the recording fits in one. Otherwise as few windows as the overlap allows,
    spread evenly from 0 to `total`, so every seam gets the same (rounded) overlap.
    """
    if length <= 0 or not 0 <= overlap < length:
        raise ValueError(f"need 0 <= overlap < length (got length={length}, overlap={overlap})")
    if total <= length:
        return [Window(0, max(total, 0))]
    span = total - length
    count = math.ceil(span / (length - overlap)) + 1
    return [Window(start, start + length) for start in ((i * span) // (count - 1) for i in range(count))]


def _near(word: FrameWord, point: int, slack: int) -> bool:
    return word.start - slack < point < word.end + slack


def _choose_cut(words: Sequence[FrameWord], low: int, high: int, middle_x2: int, slack: int) -> int:
    """The point of [low, high] near the fewest words; ties go to the one nearest the middle."""
    return min(
        range(low, high + 1),
        key=lambda point: (sum(_near(w, point, slack) for w in words), abs(2 * point - middle_x2), point),
    )


def plan_seam(
    left: Window,
    right: Window,
    left_words: Sequence[FrameWord],
    right_words: Sequence[FrameWord],
    slack: int = 1,
) -> Seam:
    """The hand-over between neighbouring windows, from both windows' words (recording frames).

    `slack` is how many frames two windows' readings of one word may disagree by: a clean cut
    keeps that far from every word, so no word can sit on one side in one reading and on the
    other side in the other.
    """
    low, high = right.start, left.end
    if high < low:
        raise ValueError(f"windows {left} and {right} do not overlap")
    quarter = (high - low) // 4
    nearby = [w for w in (*left_words, *right_words) if w.end + slack > low and w.start - slack < high]
    cut = _choose_cut(nearby, low + quarter, high - quarter, low + high, slack)
    cluster = [w for w in nearby if _near(w, cut, slack)]
    if not cluster:
        return Seam(cut, cut)
    start, end = min(w.start for w in cluster), max(w.end for w in cluster)
    # Grow the span until no other word comes within `slack` of it. Only words wholly inside the
    # overlap join: beyond it one window holds fragments, and a long run of speech must not chain.
    inside = [w for w in nearby if w.start >= low and w.end <= high]
    while True:
        grown = [*cluster, *(w for w in inside if w.start - slack < end and w.end + slack > start)]
        new_start, new_end = min(w.start for w in grown), max(w.end for w in grown)
        if (new_start, new_end) == (start, end):
            break
        start, end = new_start, new_end
    owner: Side = "left" if left.end - end >= start - right.start else "right"
    return Seam(start - slack, end + slack, owner)


def side_of(word: FrameWord, seam: Seam) -> Side:
    """Which window of the seam keeps this word (a word of either window)."""
    if seam.owner is not None and word.start < seam.cut_end and word.end > seam.cut_start:
        return seam.owner
    return "left" if word.start + word.end < seam.cut_start + seam.cut_end else "right"


def merge_windows(
    windows: Sequence[Window], words: Sequence[Sequence[FrameWord]], slack: int = 1
) -> list[FrameWord]:
    """One transcript from the windows' words (each in recording frames, in order), seams resolved."""
    if len(windows) != len(words):
        raise ValueError(f"{len(windows)} windows but {len(words)} word lists")
    seams = [
        plan_seam(windows[index], windows[index + 1], words[index], words[index + 1], slack)
        for index in range(len(windows) - 1)
    ]
    merged: list[FrameWord] = []
    for index, window_words in enumerate(words):
        before = seams[index - 1] if index > 0 else None
        after = seams[index] if index < len(seams) else None
        merged.extend(
            word
            for word in window_words
            if (before is None or side_of(word, before) == "right")
            and (after is None or side_of(word, after) == "left")
        )
    return merged
