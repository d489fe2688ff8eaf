"""Window planning and seam merging as pure functions: no model, every case built by hand."""

from __future__ import annotations

import itertools
import random

import pytest

from parakeet_server.transcription.windows import (
    FrameWord,
    Seam,
    Window,
    merge_windows,
    plan_seam,
    plan_windows,
    side_of,
)


def words_of(*spans: tuple[str, int, int]) -> list[FrameWord]:
    return [FrameWord(word, start, end) for word, start, end in spans]


# --- planning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [0, 1, 999, 1000])
def test_a_recording_that_fits_is_one_window(total: int) -> None:
    assert plan_windows(total, 1000, 100) == [Window(0, total)]


@pytest.mark.parametrize(
    ("total", "length", "overlap"),
    [(1001, 1000, 100), (1900, 1000, 100), (1901, 1000, 100), (45_000, 1500, 200), (135_001, 1500, 200)],
)
def test_windows_cover_the_recording_with_at_least_the_overlap(total: int, length: int, overlap: int) -> None:
    windows = plan_windows(total, length, overlap)
    assert windows[0].start == 0 and windows[-1].end == total
    assert all(w.end - w.start == length for w in windows)
    overlaps = [left.end - right.start for left, right in itertools.pairwise(windows)]
    assert min(overlaps) >= overlap
    assert max(overlaps) - min(overlaps) <= 1  # spread evenly, not one large overlap at the end
    step = length - overlap
    assert len(windows) == -(-(total - length) // step) + 1  # no more windows than needed


def test_window_count_grows_linearly_with_length() -> None:
    assert len(plan_windows(90 * 1500, 1500, 200)) == 104  # 3 h of 80 ms frames in 120 s windows


@pytest.mark.parametrize(("length", "overlap"), [(0, 0), (100, 100), (100, -1), (100, 150)])
def test_impossible_windows_are_refused(length: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(5000, length, overlap)


# --- seams --------------------------------------------------------------------------------------

LEFT, RIGHT = Window(0, 1000), Window(800, 1800)  # overlap [800, 1000], middle 900, search [850, 950]


def test_cut_clear_of_both_readings_nearest_the_middle() -> None:
    left = words_of(("a", 880, 893), ("b", 897, 910), ("c", 960, 990))
    right = words_of(("a", 881, 894), ("b", 898, 911), ("c", 961, 989))
    seam = plan_seam(LEFT, RIGHT, left, right)
    assert seam == Seam(896, 896)  # a frame clear of every word, as close to 900 as that allows
    assert [side_of(w, seam) for w in left] == ["left", "right", "right"]
    assert [side_of(w, seam) for w in right] == ["left", "right", "right"]


def test_a_word_one_frame_apart_in_two_readings_is_kept_once() -> None:
    # Without slack the point 900 would be "free": "a" ends there in one reading, starts there in
    # the other, and would be kept twice.
    left = words_of(("z", 860, 870), ("a", 898, 900), ("b", 960, 970))
    right = words_of(("z", 860, 870), ("a", 900, 901), ("b", 960, 970))
    assert [w.word for w in merge_windows([LEFT, RIGHT], [left, right], slack=0)] == ["z", "a", "a", "b"]
    assert [w.word for w in merge_windows([LEFT, RIGHT], [left, right])] == ["z", "a", "b"]


def test_touching_words_read_alike_are_kept_once() -> None:
    left = words_of(("a", 880, 899), ("b", 899, 915))
    right = words_of(("a", 880, 899), ("b", 899, 915))
    assert plan_seam(LEFT, RIGHT, left, right, slack=0) == Seam(899, 899)
    assert plan_seam(LEFT, RIGHT, left, right) == Seam(916, 916)  # the first point clear of both
    assert merge_windows([LEFT, RIGHT], [left, right]) == left


def test_a_word_across_the_whole_search_range_is_kept_once() -> None:
    left = words_of(("long", 840, 960))
    right = words_of(("long", 842, 958))
    seam = plan_seam(LEFT, RIGHT, left, right)
    assert seam.owner is not None and seam.cut_start < 850 and seam.cut_end > 950
    assert [w.word for w in merge_windows([LEFT, RIGHT], [left, right])] == ["long"]


def test_words_the_windows_place_differently_are_kept_once() -> None:
    # No point of the middle half is clear of both readings: the cluster is taken from one window.
    left = words_of(("x", 840, 860), ("w", 860, 904), ("y", 904, 960))
    right = words_of(("x", 841, 862), ("w", 862, 906), ("y", 906, 962))
    seam = plan_seam(LEFT, RIGHT, left, right)
    assert seam.owner is not None
    merged = merge_windows([LEFT, RIGHT], [left, right])
    assert [w.word for w in merged] == ["x", "w", "y"]
    assert merged in (left, right)


def test_a_cluster_goes_to_the_window_that_sees_it_farther_from_its_edge() -> None:
    # 9 frames from the left window's end, 45 from the right window's start: the right has context.
    left = words_of(("w", 845, 990))
    right = words_of(("w", 846, 991))
    assert plan_seam(LEFT, RIGHT, left, right).owner == "right"
    assert merge_windows([LEFT, RIGHT], [left, right]) == right


def test_a_split_reading_and_a_whole_reading_of_a_word_are_not_both_kept() -> None:
    # The left window hears one word where the right hears two: one reading survives, never both.
    left = words_of(("into", 880, 940))
    right = words_of(("in", 880, 905), ("to", 905, 940))
    merged = merge_windows([LEFT, RIGHT], [left, right])
    assert [w.word for w in merged] in (["into"], ["in", "to"])


def test_zero_length_words_on_the_cut_are_kept_once() -> None:
    left = words_of(("a", 880, 900), ("b", 900, 900), ("c", 900, 920))
    right = words_of(("a", 880, 900), ("b", 900, 900), ("c", 900, 920))
    merged = merge_windows([LEFT, RIGHT], [left, right])
    assert [w.word for w in merged] == ["a", "b", "c"]


def test_edge_fragments_beyond_the_cut_are_dropped() -> None:
    # Each window cuts a word in half at its edge and misreads it; the other window has it whole.
    left = words_of(("one", 700, 720), ("two", 870, 890), ("thr", 990, 1000))
    right = words_of(("ee", 800, 806), ("two", 870, 890), ("three", 990, 1010), ("four", 1200, 1220))
    merged = merge_windows([LEFT, RIGHT], [left, right])
    assert [w.word for w in merged] == ["one", "two", "three", "four"]


def test_seams_need_overlapping_windows() -> None:
    with pytest.raises(ValueError, match="do not overlap"):
        plan_seam(Window(0, 100), Window(200, 300), [], [])


def test_merge_needs_one_word_list_per_window() -> None:
    with pytest.raises(ValueError, match="2 windows but 1 word lists"):
        merge_windows([LEFT, RIGHT], [[]])


# --- merging a whole recording ------------------------------------------------------------------


def _speech(total: int, seed: int) -> list[FrameWord]:
    """Words of 2-12 frames, mostly touching, sometimes with pauses, over `total` frames."""
    rng = random.Random(seed)
    words, cursor, index = [], 0, 0
    while True:
        cursor += rng.choice([0, 0, 0, 1, 3, 10])
        length = rng.randint(2, 12)
        if cursor + length > total:
            return words
        words.append(FrameWord(f"w{index}", cursor, cursor + length, rng.random()))
        cursor += length
        index += 1


def _as_heard(words: list[FrameWord], window: Window, rng: random.Random, jitter: int) -> list[FrameWord]:
    """What a window reports: the words wholly inside it, each boundary moved by up to `jitter`
    frames, kept in order; a word cut by the window's edge comes back as a fragment."""
    heard: list[FrameWord] = []
    floor = window.start
    for word in words:
        if word.end <= window.start or word.start >= window.end:
            continue
        start = max(word.start + rng.randint(-jitter, jitter), floor, window.start)
        end = min(max(word.end + rng.randint(-jitter, jitter), start), window.end)
        name = word.word if window.start <= word.start and word.end <= window.end else word.word + "~"
        heard.append(FrameWord(name, start, end, word.confidence))
        floor = end
    return heard


@pytest.mark.parametrize(("jitter", "slack"), [(0, 0), (0, 1), (1, 1), (2, 2), (3, 3)])
@pytest.mark.parametrize("seed", range(8))
def test_every_word_survives_the_seams_exactly_once(seed: int, jitter: int, slack: int) -> None:
    """Each window's reading moves every word boundary by up to `jitter` frames; a slack of at
    least that keeps every word (2 frames or longer) exactly once."""
    total = 20_000
    spoken = _speech(total, seed)
    windows = plan_windows(total, 1500, 200)
    rng = random.Random(seed)
    heard = [_as_heard(spoken, window, rng, jitter) for window in windows]
    merged = merge_windows(windows, heard, slack)
    assert [w.word for w in merged] == [w.word for w in spoken]
    assert all(a.start <= b.start and a.end <= b.start for a, b in itertools.pairwise(merged))
    if jitter == 0:
        assert merged == spoken  # times and confidences come through untouched


def test_one_window_is_its_own_transcript() -> None:
    words = words_of(("a", 0, 5), ("b", 6, 9))
    assert merge_windows([Window(0, 10)], [words]) == words
