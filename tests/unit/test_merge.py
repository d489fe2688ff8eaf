"""The word-to-speaker merge: speaker choice, segment re-split and utterances."""

from __future__ import annotations

import pytest

from parakeet.v1 import audio_pb2, orchestrator_pb2
from parakeet_server.core.merge import (
    assign_speakers,
    build_utterances,
    speakers_in_order,
    split_segments_by_speaker,
    time_order,
    words_by_segment,
)

A, B, C = "SPEAKER_00", "SPEAKER_01", "SPEAKER_02"


def word(start: float, end: float, text: str = "w", speaker: str = "") -> audio_pb2.Word:
    return audio_pb2.Word(start=start, end=end, word=text, speaker=speaker)


def turn(start: float, end: float, speaker: str) -> audio_pb2.SpeakerTurn:
    return audio_pb2.SpeakerTurn(start=start, end=end, speaker=speaker)


def segment(start: float, end: float, text: str, speaker: str = "", id_: int = 0) -> audio_pb2.Segment:
    return audio_pb2.Segment(id=id_, start=start, end=end, text=text, speaker=speaker)


def speakers(words: list[audio_pb2.Word]) -> list[str]:
    return [w.speaker for w in words]


def as_tuples(segments: list[audio_pb2.Segment]) -> list[tuple[int, float, float, str, str]]:
    return [(s.id, s.start, s.end, s.text, s.speaker) for s in segments]


def utterance_tuples(
    utterances: list[orchestrator_pb2.Utterance],
) -> list[tuple[float, float, str, str]]:
    return [(u.start, u.end, u.speaker, u.text) for u in utterances]


# --- assign_speakers -------------------------------------------------------------------------


def test_word_inside_a_turn_gets_that_turns_speaker() -> None:
    turns = [turn(0.0, 2.0, A), turn(2.0, 4.0, B)]
    assert speakers(assign_speakers([word(0.5, 1.0), word(2.5, 3.0)], turns)) == [A, B]


def test_word_straddling_turn_boundary_goes_to_larger_overlap() -> None:
    turns = [turn(0.0, 2.0, A), turn(2.0, 4.0, B)]
    # [1.5, 2.2]: 0.5 s with A, 0.2 s with B; [1.9, 2.6]: 0.1 s with A, 0.6 s with B.
    assert speakers(assign_speakers([word(1.5, 2.2), word(1.9, 2.6)], turns)) == [A, B]


def test_word_in_gap_goes_to_nearest_turn() -> None:
    turns = [turn(0.0, 1.0, A), turn(3.0, 4.0, B)]
    closer_to_a, closer_to_b = word(1.2, 1.4), word(2.5, 2.8)
    assert speakers(assign_speakers([closer_to_a, closer_to_b], turns)) == [A, B]


def test_word_equidistant_in_gap_goes_to_earlier_turn() -> None:
    turns = [turn(0.0, 1.0, A), turn(3.0, 4.0, B)]
    assert speakers(assign_speakers([word(1.5, 2.5)], turns)) == [A]


def test_words_before_first_and_after_last_turn_go_to_edge_turns() -> None:
    turns = [turn(5.0, 6.0, A), turn(6.0, 7.0, B)]
    assert speakers(assign_speakers([word(0.0, 0.5), word(9.0, 9.5)], turns)) == [A, B]


def test_overlapping_speech_goes_to_speaker_with_more_overlap() -> None:
    turns = [turn(0.0, 3.0, A), turn(2.0, 5.0, B)]
    # [1.8, 2.6]: A covers all 0.8 s, B 0.6 s. [2.5, 3.4]: A 0.5 s, B all 0.9 s.
    assert speakers(assign_speakers([word(1.8, 2.6), word(2.5, 3.4)], turns)) == [A, B]


def test_word_inside_two_overlapping_turns_goes_to_speaker_who_started_first() -> None:
    turns = [turn(1.0, 5.0, B), turn(0.0, 4.0, A)]
    assert speakers(assign_speakers([word(2.0, 3.0)], turns)) == [A]


def test_identical_turns_go_to_speaker_first_in_label_order() -> None:
    turns = [turn(0.0, 2.0, B), turn(0.0, 2.0, A)]
    assert speakers(assign_speakers([word(0.5, 1.0)], turns)) == [A]


def test_equal_overlap_goes_to_turn_containing_midpoint() -> None:
    turns = [turn(0.0, 2.0, A), turn(2.0, 4.0, B)]
    # 1 s with each; the midpoint 2.0 starts B's turn (turns are half-open for this rule).
    assert speakers(assign_speakers([word(1.0, 3.0)], turns)) == [B]


def test_equal_overlap_is_not_decided_by_float_noise() -> None:
    # In floats 0.704 - 0.407 > 1.001 - 0.704 (also when scaled to microseconds), yet both
    # overlaps are 0.297 s: the tie goes on to the midpoint rule, which picks B.
    turns = [turn(0.0, 0.704, A), turn(0.704, 2.0, B)]
    assert speakers(assign_speakers([word(0.407, 1.001)], turns)) == [B]


def test_overlap_is_summed_over_a_speakers_turns() -> None:
    turns = [turn(0.0, 0.8, A), turn(0.8, 2.2, B), turn(2.2, 3.0, A)]
    # A: 0.8 + 0.8 = 1.6 s, B: 1.4 s; B's single turn is longer than either of A's.
    assert speakers(assign_speakers([word(0.0, 3.0)], turns)) == [A]


def test_duplicated_turns_of_one_speaker_are_not_counted_twice() -> None:
    turns = [turn(0.0, 2.0, A), turn(0.0, 2.0, A), turn(1.5, 4.0, B)]
    # A: 1.0 s (2.0 if the duplicate counted), B: 1.5 s.
    assert speakers(assign_speakers([word(1.0, 3.0)], turns)) == [B]


def test_zero_length_word_inside_a_turn_gets_that_speaker() -> None:
    turns = [turn(0.0, 2.0, A), turn(2.0, 4.0, B)]
    assert speakers(assign_speakers([word(1.0, 1.0), word(3.0, 3.0)], turns)) == [A, B]


def test_zero_length_word_on_a_boundary_goes_to_turn_starting_there() -> None:
    turns = [turn(0.0, 2.0, A), turn(2.0, 4.0, B)]
    assert speakers(assign_speakers([word(2.0, 2.0)], turns)) == [B]


def test_zero_length_word_at_end_of_last_turn_and_in_gap() -> None:
    turns = [turn(0.0, 1.0, A), turn(3.0, 4.0, B)]
    words = [word(4.0, 4.0), word(1.1, 1.1), word(2.9, 2.9)]
    assert speakers(assign_speakers(words, turns)) == [B, A, B]


def test_reversed_word_times_read_as_a_point_at_start() -> None:
    turns = [turn(0.0, 2.0, A), turn(2.0, 4.0, B)]
    assert speakers(assign_speakers([word(1.5, 0.5)], turns)) == [A]


def test_single_speaker_gets_every_word() -> None:
    turns = [turn(0.5, 1.0, A), turn(3.0, 4.0, A)]
    words = [word(0.0, 0.2), word(0.6, 0.9), word(2.0, 2.5), word(5.0, 5.5)]
    assert speakers(assign_speakers(words, turns)) == [A, A, A, A]


def test_no_turns_leaves_every_speaker_empty() -> None:
    words = [word(0.0, 1.0, speaker="stale"), word(1.0, 2.0)]
    result = assign_speakers(words, [])
    assert speakers(result) == ["", ""]
    assert [w.word for w in result] == ["w", "w"]


def test_unlabelled_turns_are_ignored() -> None:
    turns = [turn(0.0, 2.0, ""), turn(3.0, 4.0, B)]
    assert speakers(assign_speakers([word(0.5, 1.0)], turns)) == [B]


def test_no_words_gives_no_words() -> None:
    assert assign_speakers([], [turn(0.0, 1.0, A)]) == []


def test_inputs_are_untouched_and_other_fields_kept() -> None:
    original = audio_pb2.Word(start=0.5, end=1.0, word="hi", confidence=0.75)
    words = [original]
    result = assign_speakers(words, [turn(0.0, 2.0, A)])
    assert original.speaker == ""
    assert result[0] is not original
    assert result[0] == audio_pb2.Word(start=0.5, end=1.0, word="hi", speaker=A, confidence=0.75)
    assert result[0].HasField("confidence")


def test_unsorted_inputs_give_the_same_speakers_in_input_order() -> None:
    turns = [turn(4.0, 6.0, C), turn(0.0, 2.0, A), turn(2.0, 4.0, B)]
    words = [word(5.0, 5.5, "c"), word(0.5, 1.0, "a"), word(2.5, 3.0, "b"), word(1.9, 2.6, "b2")]
    result = assign_speakers(words, turns)
    assert [(w.word, w.speaker) for w in result] == [("c", C), ("a", A), ("b", B), ("b2", B)]


@pytest.mark.timeout(60)
def test_hour_of_audio_with_10k_words_and_2k_turns_follows_the_pattern() -> None:
    # Turn i: [2i, 2i + 1.5] for speaker i % 4, then a 0.5 s gap. Five words per turn: four
    # inside it and one late in the gap, nearer the next turn. A sorted sweep does this in well
    # under a second; a words x turns Python loop (20M steps) would hit the timeout guard.
    labels = [f"SPEAKER_{i:02d}" for i in range(4)]
    n_turns = 2000
    turns = [turn(2.0 * i, 2.0 * i + 1.5, labels[i % 4]) for i in range(n_turns)]
    words: list[audio_pb2.Word] = []
    expected: list[str] = []
    for i in range(n_turns):
        base = 2.0 * i
        for k in range(4):
            words.append(word(base + 0.3 * k, base + 0.3 * k + 0.25))
            expected.append(labels[i % 4])
        words.append(word(base + 1.85, base + 1.95))
        expected.append(labels[min(i + 1, n_turns - 1) % 4])
    assert len(words) == 10_000
    result = assign_speakers(list(reversed(words)), list(reversed(turns)))
    assert speakers(result) == list(reversed(expected))


# --- speakers_in_order -----------------------------------------------------------------------


def test_speakers_in_order_of_first_appearance_without_blanks() -> None:
    items = [word(0, 1, speaker=B), word(1, 2), word(2, 3, speaker=A), word(3, 4, speaker=B)]
    assert speakers_in_order(items) == [B, A]
    assert speakers_in_order([turn(0, 1, C), turn(1, 2, A)]) == [C, A]


# --- words_by_segment ------------------------------------------------------------------------


def test_word_belongs_to_segment_containing_its_midpoint() -> None:
    segments = [segment(0.0, 2.0, "x"), segment(2.0, 4.0, "y")]
    words = [word(1.5, 2.3, "first"), word(1.9, 2.9, "second")]
    groups = words_by_segment(segments, words)
    assert [[w.word for w in group] for group in groups] == [["first"], ["second"]]


def test_word_outside_every_segment_goes_to_nearest_segment() -> None:
    segments = [segment(5.0, 6.0, "late"), segment(0.0, 1.0, "early")]
    words = [word(1.1, 1.3, "after_early"), word(4.0, 4.5, "before_late"), word(9.0, 9.1, "end")]
    groups = words_by_segment(segments, words)
    assert [[w.word for w in group] for group in groups] == [["before_late", "end"], ["after_early"]]


def test_time_order_sorts_by_start_then_end_then_input_order() -> None:
    segments = [
        segment(2.0, 3.0, "c"),
        segment(0.0, 2.0, "b"),
        segment(0.0, 1.0, "a"),
        segment(0.0, 1.0, "a2"),
    ]
    assert time_order(segments) == [2, 3, 1, 0]


# --- split_segments_by_speaker ---------------------------------------------------------------


def test_segment_split_where_speaker_changes_with_exact_texts_times_and_ids() -> None:
    segments = [
        segment(0.0, 3.2, "Hello there. How are you?", id_=7),
        segment(4.0, 6.0, "Fine,  thanks.", id_=8),
    ]
    words = [
        word(0.0, 0.5, "Hello", A),
        word(0.6, 1.0, "there.", A),
        word(2.0, 2.3, "How", B),
        word(2.4, 2.6, "are", B),
        word(2.7, 3.0, "you?", B),
        word(4.1, 4.5, "Fine,", B),
        word(4.6, 5.0, "thanks.", B),
    ]
    assert as_tuples(split_segments_by_speaker(segments, words)) == [
        (0, 0.0, 1.0, "Hello there.", A),
        (1, 2.0, 3.0, "How are you?", B),
        (2, 4.0, 6.0, "Fine,  thanks.", B),  # one speaker: the model's own text and times
    ]


def test_segment_alternating_speakers_splits_into_one_segment_per_run() -> None:
    segments = [segment(0.0, 5.0, "a b c d e")]
    words = [
        word(0.0, 0.9, "a", A),
        word(1.0, 1.9, "b", B),
        word(2.0, 2.9, "c", B),
        word(3.0, 3.9, "d", A),
        word(4.0, 5.0, " e ", A),
    ]
    assert as_tuples(split_segments_by_speaker(segments, words)) == [
        (0, 0.0, 0.9, "a", A),
        (1, 1.0, 2.9, "b c", B),
        (2, 3.0, 5.0, "d e", A),
    ]


def test_segment_without_words_takes_speaker_of_nearest_word() -> None:
    segments = [segment(0.0, 1.0, "one"), segment(1.5, 2.0, "(silence)"), segment(5.0, 6.0, "two")]
    words = [word(0.2, 0.8, "one", A), word(5.2, 5.8, "two", B)]
    assert as_tuples(split_segments_by_speaker(segments, words)) == [
        (0, 0.0, 1.0, "one", A),
        (1, 1.5, 2.0, "(silence)", A),
        (2, 5.0, 6.0, "two", B),
    ]


def test_segments_without_any_words_keep_text_and_get_empty_speaker() -> None:
    segments = [segment(0.0, 1.0, "one", speaker="stale"), segment(1.0, 2.0, "two")]
    assert as_tuples(split_segments_by_speaker(segments, [])) == [
        (0, 0.0, 1.0, "one", ""),
        (1, 1.0, 2.0, "two", ""),
    ]


def test_no_segments_gives_no_segments() -> None:
    assert split_segments_by_speaker([], [word(0.0, 1.0, "x", A)]) == []


def test_unsorted_segments_come_back_in_time_order_with_ids_from_zero() -> None:
    segments = [segment(2.0, 3.0, "later", id_=0), segment(0.0, 1.0, "earlier", id_=1)]
    words = [word(2.1, 2.9, "later", B), word(0.1, 0.9, "earlier", A)]
    assert as_tuples(split_segments_by_speaker(segments, words)) == [
        (0, 0.0, 1.0, "earlier", A),
        (1, 2.0, 3.0, "later", B),
    ]


def test_split_leaves_input_segments_untouched() -> None:
    original = segment(0.0, 2.0, "a b", id_=5)
    split_segments_by_speaker([original], [word(0.0, 0.9, "a", A), word(1.0, 2.0, "b", B)])
    assert original == segment(0.0, 2.0, "a b", id_=5)


def test_assign_then_split_pipeline_on_two_speakers() -> None:
    turns = [turn(0.0, 1.55, A), turn(1.55, 3.0, B)]
    raw = [word(0.0, 0.5, "Yes,"), word(0.6, 1.5, "indeed."), word(1.6, 2.0, "No"), word(2.1, 2.9, "way.")]
    words = assign_speakers(raw, turns)
    result = split_segments_by_speaker([segment(0.0, 2.9, "Yes, indeed. No way.")], words)
    assert as_tuples(result) == [(0, 0.0, 1.5, "Yes, indeed.", A), (1, 1.6, 2.9, "No way.", B)]


# --- build_utterances ------------------------------------------------------------------------


def test_utterances_split_on_speaker_change() -> None:
    words = [word(0.0, 0.4, "Hi", A), word(0.5, 0.9, "there.", A), word(1.0, 1.5, "Hello.", B)]
    assert utterance_tuples(build_utterances(words)) == [
        (0.0, 0.9, A, "Hi there."),
        (1.0, 1.5, B, "Hello."),
    ]


def test_utterances_split_on_pause_longer_than_max() -> None:
    words = [word(0.0, 1.0, "one", A), word(2.0, 2.5, "two", A), word(3.6, 4.0, "three", A)]
    # 1.0 s pause (not over the limit) keeps going; 1.1 s starts a new utterance.
    assert utterance_tuples(build_utterances(words)) == [
        (0.0, 2.5, A, "one two"),
        (3.6, 4.0, A, "three"),
    ]
    assert utterance_tuples(build_utterances(words, max_pause_s=0.5)) == [
        (0.0, 1.0, A, "one"),
        (2.0, 2.5, A, "two"),
        (3.6, 4.0, A, "three"),
    ]


def test_utterances_from_unsorted_words_follow_time() -> None:
    words = [word(1.0, 1.5, "b", B), word(0.0, 0.4, "a", A), word(0.5, 0.9, "a2", A)]
    assert utterance_tuples(build_utterances(words)) == [
        (0.0, 0.9, A, "a a2"),
        (1.0, 1.5, B, "b"),
    ]


def test_utterances_without_speakers_split_only_on_pauses() -> None:
    words = [word(0.0, 0.5, "a"), word(0.6, 1.0, "b"), word(5.0, 5.5, "c")]
    assert utterance_tuples(build_utterances(words)) == [(0.0, 1.0, "", "a b"), (5.0, 5.5, "", "c")]


def test_no_words_gives_no_utterances() -> None:
    assert build_utterances([]) == []


def test_merged_times_are_whole_milliseconds_whatever_the_inputs_carry() -> None:
    """Frame arithmetic leaves binary noise (35 x 0.08 = 2.8000000000000003); the merge's words,
    segments and utterances show the millisecond, here where words came from anywhere."""
    noisy = [word(35 * 0.08, 0.1 + 0.2 + 3.0, "a"), word(3.4, 3.5 + 1e-9, "b"), word(4.2, 4.7, "c")]
    assert noisy[0].start == 2.8000000000000003  # the noise is there to remove
    words = assign_speakers(noisy, [turn(0.0, 3.45, A), turn(3.45, 5.0, B)])
    assert [(w.word, w.start, w.end, w.speaker) for w in words] == [
        ("a", 2.8, 3.3, A),
        ("b", 3.4, 3.5, B),
        ("c", 4.2, 4.7, B),
    ]
    assert noisy[0].start == 2.8000000000000003 and noisy[0].speaker == ""  # inputs untouched
    one_speaker = segment(4.2 + 1e-7, 4.7, "c.")
    split = split_segments_by_speaker([segment(2.8000000000000003, 3.5, "a b."), one_speaker], words)
    assert as_tuples(split) == [(0, 2.8, 3.3, "a", A), (1, 3.4, 3.5, "b", B), (2, 4.2, 4.7, "c.", B)]
    assert utterance_tuples(build_utterances(words)) == [(2.8, 3.3, A, "a"), (3.4, 4.7, B, "b c")]
