"""Documents: every format parses with a real parser and carries the exact times, texts, speakers."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
import srt
import webvtt

from parakeet.v1 import audio_pb2
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.core.formats import (
    MAX_CUE_CHARS,
    Cue,
    render_document,
    render_rttm,
    subtitle_cues,
)

A, B = "SPEAKER_00", "SPEAKER_01"
TEXT = audio_pb2.RESPONSE_FORMAT_TEXT
SRT = audio_pb2.RESPONSE_FORMAT_SRT
VTT = audio_pb2.RESPONSE_FORMAT_VTT
RTTM = audio_pb2.RESPONSE_FORMAT_RTTM


def segment(start: float, end: float, text: str, speaker: str = "") -> audio_pb2.Segment:
    return audio_pb2.Segment(start=start, end=end, text=text, speaker=speaker)


def word(start: float, end: float, text: str, speaker: str = "") -> audio_pb2.Word:
    return audio_pb2.Word(start=start, end=end, word=text, speaker=speaker)


def turn(start: float, end: float, speaker: str) -> audio_pb2.SpeakerTurn:
    return audio_pb2.SpeakerTurn(start=start, end=end, speaker=speaker)


DIALOGUE = [
    segment(0.0, 1.5, "Hello there.", A),
    segment(1.5, 3.25, "Hi! How are you?", B),
    segment(3.25, 4.0, "Fine.", B),
    segment(4.5, 6.125, "Good to hear.", A),
]


def srt_cues(document: str) -> list[tuple[int, timedelta, timedelta, str]]:
    return [(cue.index, cue.start, cue.end, cue.content) for cue in srt.parse(document)]


def vtt_cues(document: str) -> list[tuple[str, str, str | None, str]]:
    return [(cue.start, cue.end, cue.voice, html.unescape(cue.text)) for cue in webvtt.from_string(document)]


def ms(value: int) -> timedelta:
    return timedelta(milliseconds=value)


# --- structured formats and errors -----------------------------------------------------------


@pytest.mark.parametrize(
    "response_format",
    [
        audio_pb2.RESPONSE_FORMAT_UNSPECIFIED,
        audio_pb2.RESPONSE_FORMAT_JSON,
        audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON,
    ],
)
def test_json_formats_render_an_empty_document(response_format: int) -> None:
    assert render_document(response_format, DIALOGUE, [turn(0.0, 1.0, A)]) == ""


def test_unknown_format_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as raised:
        render_document(42, DIALOGUE)
    assert raised.value.message == (
        "this API has no response_format 42; use one of: json, verbose_json, text, srt, vtt, rttm"
    )
    assert raised.value.reason == "UNSUPPORTED_FORMAT"


# --- TEXT ------------------------------------------------------------------------------------


def test_text_without_speakers_is_one_line_per_segment() -> None:
    segments = [segment(0.0, 1.0, " Hello  there. "), segment(1.0, 2.0, "Second\nline.")]
    assert render_document(TEXT, segments) == "Hello there.\nSecond line.\n"


def test_text_with_speakers_is_one_prefixed_line_per_run_of_a_speaker() -> None:
    assert render_document(TEXT, DIALOGUE) == (
        "SPEAKER_00: Hello there.\nSPEAKER_01: Hi! How are you? Fine.\nSPEAKER_00: Good to hear.\n"
    )


def test_text_orders_segments_by_time_and_skips_blank_ones() -> None:
    segments = [segment(2.0, 3.0, "later", B), segment(1.0, 2.0, "   ", A), segment(0.0, 1.0, "first", A)]
    assert render_document(TEXT, segments) == "SPEAKER_00: first\nSPEAKER_01: later\n"


def test_text_segment_without_speaker_among_speakers_has_a_bare_line() -> None:
    segments = [segment(0.0, 1.0, "one", A), segment(1.0, 2.0, "two"), segment(2.0, 3.0, "three", A)]
    assert render_document(TEXT, segments) == "SPEAKER_00: one\ntwo\nSPEAKER_00: three\n"


def test_text_of_nothing_is_empty() -> None:
    assert render_document(TEXT, []) == ""


# --- SRT -------------------------------------------------------------------------------------


def test_srt_cues_parse_with_exact_times_and_speaker_prefixes() -> None:
    document = render_document(SRT, DIALOGUE)
    assert srt_cues(document) == [
        (1, ms(0), ms(1500), "SPEAKER_00: Hello there."),
        (2, ms(1500), ms(3250), "SPEAKER_01: Hi! How are you?"),
        (3, ms(3250), ms(4000), "SPEAKER_01: Fine."),
        (4, ms(4500), ms(6125), "SPEAKER_00: Good to hear."),
    ]


def test_srt_document_is_exact() -> None:
    assert render_document(SRT, DIALOGUE[:2]) == (
        "1\n00:00:00,000 --> 00:00:01,500\nSPEAKER_00: Hello there.\n\n"
        "2\n00:00:01,500 --> 00:00:03,250\nSPEAKER_01: Hi! How are you?\n"
    )


def test_srt_without_speakers_has_no_prefix() -> None:
    document = render_document(SRT, [segment(0.25, 1.0, "Just text.")])
    assert srt_cues(document) == [(1, ms(250), ms(1000), "Just text.")]


def test_srt_numbers_cues_in_time_order_skipping_blank_segments() -> None:
    segments = [segment(5.0, 6.0, "third"), segment(1.0, 2.0, ""), segment(0.0, 1.0, "first")]
    assert srt_cues(render_document(SRT, segments)) == [
        (1, ms(0), ms(1000), "first"),
        (2, ms(5000), ms(6000), "third"),
    ]


def test_srt_cue_text_never_contains_a_blank_line() -> None:
    segments = [segment(0.0, 1.0, "line one\n\nline two"), segment(1.0, 2.0, "next")]
    assert srt_cues(render_document(SRT, segments)) == [
        (1, ms(0), ms(1000), "line one line two"),
        (2, ms(1000), ms(2000), "next"),
    ]


def test_srt_clamps_negative_times_and_ends_before_starts() -> None:
    segments = [segment(-0.5, 0.5, "early"), segment(3.0, 2.0, "reversed")]
    assert srt_cues(render_document(SRT, segments)) == [
        (1, ms(0), ms(500), "early"),
        (2, ms(3000), ms(3000), "reversed"),
    ]


def test_srt_handles_a_four_hour_recording() -> None:
    document = render_document(SRT, [segment(14_399.5, 14_401.25, "late", A)])
    assert "03:59:59,500 --> 04:00:01,250" in document
    assert srt_cues(document) == [(1, ms(14_399_500), ms(14_401_250), "SPEAKER_00: late")]


def test_srt_rounds_to_the_nearest_millisecond() -> None:
    document = render_document(SRT, [segment(1.0004, 2.0006, "x")])
    assert srt_cues(document) == [(1, ms(1000), ms(2001), "x")]


def test_srt_of_nothing_is_empty() -> None:
    assert render_document(SRT, []) == ""


# --- VTT -------------------------------------------------------------------------------------


def test_vtt_cues_parse_with_exact_times_voices_and_texts() -> None:
    document = render_document(VTT, DIALOGUE)
    assert document.startswith("WEBVTT\n\n")
    assert vtt_cues(document) == [
        ("00:00:00.000", "00:00:01.500", A, "Hello there."),
        ("00:00:01.500", "00:00:03.250", B, "Hi! How are you?"),
        ("00:00:03.250", "00:00:04.000", B, "Fine."),
        ("00:00:04.500", "00:00:06.125", A, "Good to hear."),
    ]


def test_vtt_document_is_exact() -> None:
    assert render_document(VTT, DIALOGUE[:2]) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.500\n<v SPEAKER_00>Hello there.\n\n"
        "00:00:01.500 --> 00:00:03.250\n<v SPEAKER_01>Hi! How are you?\n"
    )


def test_vtt_without_speakers_has_no_voice_tags() -> None:
    document = render_document(VTT, [segment(0.0, 1.0, "Plain.")])
    assert "<v" not in document
    assert vtt_cues(document) == [("00:00:00.000", "00:00:01.000", None, "Plain.")]


def test_vtt_escapes_ampersand_and_angle_brackets() -> None:
    document = render_document(VTT, [segment(0.0, 1.0, "R&D <b>bold</b> --> 1 < 2 > 0", A)])
    assert "<v SPEAKER_00>R&amp;D &lt;b&gt;bold&lt;/b&gt; --&gt; 1 &lt; 2 &gt; 0\n" in document
    assert vtt_cues(document) == [("00:00:00.000", "00:00:01.000", A, "R&D <b>bold</b> --> 1 < 2 > 0")]


def test_vtt_cue_text_never_contains_a_blank_line() -> None:
    segments = [segment(0.0, 1.0, "a\n\nb", A), segment(1.0, 2.0, "c", B)]
    assert vtt_cues(render_document(VTT, segments)) == [
        ("00:00:00.000", "00:00:01.000", A, "a b"),
        ("00:00:01.000", "00:00:02.000", B, "c"),
    ]


def test_vtt_handles_a_four_hour_recording() -> None:
    document = render_document(VTT, [segment(14_400.0, 14_402.5, "late", B)])
    assert vtt_cues(document) == [("04:00:00.000", "04:00:02.500", B, "late")]


def test_vtt_of_nothing_is_just_the_header() -> None:
    document = render_document(VTT, [])
    assert document == "WEBVTT\n"
    assert vtt_cues(document) == []


# --- long cues -------------------------------------------------------------------------------


def test_long_segment_is_split_into_cues_at_word_boundaries_within_seven_seconds() -> None:
    words = [word(float(i), i + 0.75, f"w{i}", A) for i in range(12)]
    long = segment(0.0, 11.75, " ".join(w.word for w in words), A)
    document = render_document(SRT, [long], words=words)
    assert srt_cues(document) == [
        (1, ms(0), ms(6750), "SPEAKER_00: w0 w1 w2 w3 w4 w5 w6"),
        (2, ms(7000), ms(11_750), "SPEAKER_00: w7 w8 w9 w10 w11"),
    ]
    assert vtt_cues(render_document(VTT, [long], words=words)) == [
        ("00:00:00.000", "00:00:06.750", A, "w0 w1 w2 w3 w4 w5 w6"),
        ("00:00:07.000", "00:00:11.750", A, "w7 w8 w9 w10 w11"),
    ]


def test_long_segment_is_split_by_characters_when_words_are_dense() -> None:
    words = [word(i * 0.1, i * 0.1 + 0.05, "abcdefghi") for i in range(12)]  # 119 chars in 1.15 s
    long = segment(0.0, 1.15, " ".join(w.word for w in words))
    cues = subtitle_cues([long], words)
    assert [len(cue.text) for cue in cues] == [79, 39]
    assert all(len(cue.text) <= MAX_CUE_CHARS for cue in cues)
    assert cues[0] == Cue(0, 750, " ".join(["abcdefghi"] * 8), "")
    assert cues[1] == Cue(800, 1150, " ".join(["abcdefghi"] * 4), "")


def test_long_segment_without_words_stays_one_cue() -> None:
    long = segment(0.0, 20.0, "a long monologue without word timings", B)
    assert srt_cues(render_document(SRT, [long])) == [
        (1, ms(0), ms(20_000), "SPEAKER_01: a long monologue without word timings")
    ]


def test_short_segments_keep_their_own_text_when_words_are_given() -> None:
    words = [word(0.0, 0.5, "hello,"), word(0.6, 1.0, "world")]
    segments = [segment(0.0, 1.2, "Hello, world!", A)]
    assert srt_cues(render_document(SRT, segments, words=words)) == [
        (1, ms(0), ms(1200), "SPEAKER_00: Hello, world!")
    ]


def test_words_outside_a_long_segment_stay_in_their_own_segment() -> None:
    words = [word(float(i), i + 0.5, f"a{i}") for i in range(9)] + [word(20.0, 20.5, "b")]
    segments = [segment(0.0, 8.5, " ".join(f"a{i}" for i in range(9)), A), segment(20.0, 20.5, "b", B)]
    assert srt_cues(render_document(SRT, segments, words=words)) == [
        (1, ms(0), ms(6500), "SPEAKER_00: a0 a1 a2 a3 a4 a5 a6"),
        (2, ms(7000), ms(8500), "SPEAKER_00: a7 a8"),
        (3, ms(20_000), ms(20_500), "SPEAKER_01: b"),
    ]


# --- RTTM ------------------------------------------------------------------------------------


def test_rttm_has_one_exact_line_per_turn() -> None:
    turns = [turn(0.0, 1.5, A), turn(1.25, 4.0, B), turn(4.0, 3.0, A)]
    expected = (
        "SPEAKER call 1 0.000 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        "SPEAKER call 1 1.250 2.750 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
        "SPEAKER call 1 4.000 0.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
    )
    assert render_document(RTTM, DIALOGUE, turns, file_id="call") == expected
    assert render_rttm(turns, "call") == expected


def test_rttm_without_turns_is_empty_and_default_file_id_is_audio() -> None:
    assert render_document(RTTM, DIALOGUE) == ""
    assert render_document(RTTM, [], [turn(0.5, 1.0, A)]) == (
        "SPEAKER audio 1 0.500 0.500 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
    )
