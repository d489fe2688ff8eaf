"""Rendering of transcripts and speaker turns into documents: text, srt, vtt, rttm.

The one renderer every service and path uses, so a cue looks the same whether it came from the
transcription endpoint, the orchestrator, the CLI or a batch run (which renders every asked
format from one verbose response, on the client). It lives in the client package because the
client must not import the server, and the server renders through it (parakeet_server.core.formats).

Segments are rendered in time order (`time_order`). Cue text is one line: newlines and runs of
whitespace in a segment collapse to single spaces, because a blank line would end an SRT or
WebVTT cue early. Segments with blank text produce no cue. Times are clamped so they are never
negative and a cue never ends before it starts.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from parakeet.formats import resolve
from parakeet.v1 import audio_pb2, orchestrator_pb2


def time_order(segments: Sequence[audio_pb2.Segment]) -> list[int]:
    """Indices of `segments` by (start, end), input order among equals: the one reading order."""
    return sorted(range(len(segments)), key=lambda i: (segments[i].start, segments[i].end, i))


def midpoint(start: float, end: float) -> float:
    """The middle of a span (a reversed span counts as empty at its start)."""
    return (start + max(start, end)) / 2


def distance_to_span(point: float, start: float, end: float) -> float:
    """How far `point` lies outside the span (0 inside it)."""
    return max(0.0, start - point, point - max(start, end))


def words_by_segment(
    segments: Sequence[audio_pb2.Segment], words: Sequence[audio_pb2.Word]
) -> list[list[audio_pb2.Word]]:
    """For each segment (same order as `segments`), its words in time order.

    A word goes to the segment that starts last at or before its midpoint when that segment
    contains the midpoint (so with overlapping segments the later one wins), otherwise to the
    nearer of that segment and the next one, the earlier on a tie (a word in a gap or outside
    every segment goes to its nearest neighbour). Shared by the server's segment re-split and
    the subtitle cue split, so both agree on which words a segment has.
    """
    order = time_order(segments)
    starts = [segments[i].start for i in order]
    groups: list[list[audio_pb2.Word]] = [[] for _ in segments]
    if not segments:
        return groups
    for word in sorted(words, key=lambda word: (word.start, word.end)):
        point = midpoint(word.start, word.end)
        position = max(0, bisect_right(starts, point) - 1)
        nearby = order[position : position + 2]
        chosen = min(nearby, key=lambda i: distance_to_span(point, segments[i].start, segments[i].end))
        groups[chosen].append(word)
    return groups


def join_words(words: Iterable[audio_pb2.Word]) -> str:
    """Word texts joined with single spaces; blank words dropped."""
    return " ".join(text for word in words if (text := " ".join(word.word.split())))


# Subtitle cues longer than this are split at word boundaries when word timings are given:
# about two lines of 42 characters, shown for at most 7 seconds (common broadcast guidance).
MAX_CUE_SECONDS = 7.0
MAX_CUE_CHARS = 84


def render_rttm(turns: Sequence[audio_pb2.SpeakerTurn], file_id: str = "audio") -> str:
    """NIST RTTM: one SPEAKER line per turn (onset and duration in seconds, 3 decimals)."""
    lines = [
        f"SPEAKER {file_id} 1 {turn.start:.3f} {max(0.0, turn.end - turn.start):.3f}"
        f" <NA> <NA> {turn.speaker} <NA> <NA>"
        for turn in turns
    ]
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle cue: whole milliseconds, 0 <= start_ms <= end_ms, one line of text."""

    start_ms: int
    end_ms: int
    text: str
    speaker: str


def _ms(seconds: float) -> int:
    """Seconds as whole non-negative milliseconds; NaN and infinities read as 0."""
    return max(0, round(seconds * 1000)) if math.isfinite(seconds) else 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cue(start: float, end: float, text: str, speaker: str) -> Cue:
    start_ms = _ms(start)
    return Cue(start_ms, max(start_ms, _ms(end)), text, speaker)


def _chunks(
    words: Sequence[audio_pb2.Word], max_seconds: float, max_chars: int
) -> list[list[audio_pb2.Word]]:
    """Words packed greedily into chunks within both limits; a lone word over them stays alone."""
    chunks: list[list[audio_pb2.Word]] = []
    for word in words:
        current = chunks[-1] if chunks else []
        too_long = current and (
            word.end - current[0].start > max_seconds or len(join_words([*current, word])) > max_chars
        )
        if not current or too_long:
            chunks.append([word])
        else:
            current.append(word)
    return chunks


def subtitle_cues(
    segments: Sequence[audio_pb2.Segment],
    words: Sequence[audio_pb2.Word] = (),
    max_seconds: float = MAX_CUE_SECONDS,
    max_chars: int = MAX_CUE_CHARS,
) -> list[Cue]:
    """Cues in time order, one per segment, or several when a segment is too long to read.

    A segment longer than `max_seconds` or `max_chars` is split at word boundaries when its
    words are known (allotted by `words_by_segment`); each piece takes its words' times
    and text and the segment's speaker. Without words a long segment stays one cue.
    """
    groups = words_by_segment(segments, words) if words else [[] for _ in segments]
    cues: list[Cue] = []
    for index in time_order(segments):
        segment, group = segments[index], groups[index]
        text = _one_line(segment.text)
        if not text:
            continue
        too_long = segment.end - segment.start > max_seconds or len(text) > max_chars
        if not (too_long and join_words(group)):
            cues.append(_cue(segment.start, segment.end, text, segment.speaker))
            continue
        for chunk in _chunks([word for word in group if word.word.strip()], max_seconds, max_chars):
            end = max(max(word.start, word.end) for word in chunk)
            cues.append(_cue(chunk[0].start, end, join_words(chunk), segment.speaker))
    return cues


def _timestamp(ms: int, separator: str) -> str:
    """HH:MM:SS<sep>mmm; hours keep growing past 99 rather than wrapping."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def render_text(segments: Sequence[audio_pb2.Segment]) -> str:
    """Plain text, one line per segment; with speakers, one `SPEAKER: text` line per turn.

    "With speakers" means any segment has one: consecutive segments of one speaker then share a
    line, so the document reads like a script. Segments without a speaker get a bare line.
    """
    ordered = [segments[i] for i in time_order(segments)]
    ordered = [segment for segment in ordered if _one_line(segment.text)]
    if not any(segment.speaker for segment in ordered):
        return "".join(_one_line(segment.text) + "\n" for segment in ordered)
    lines: list[tuple[str, list[str]]] = []
    for segment in ordered:
        if lines and lines[-1][0] == segment.speaker:
            lines[-1][1].append(_one_line(segment.text))
        else:
            lines.append((segment.speaker, [_one_line(segment.text)]))
    return "".join((f"{speaker}: " if speaker else "") + " ".join(texts) + "\n" for speaker, texts in lines)


def render_srt(cues: Sequence[Cue]) -> str:
    """SubRip: numbered cues from 1, `HH:MM:SS,mmm` times, `SPEAKER: ` prefix when known."""
    blocks = [
        f"{number}\n{_timestamp(cue.start_ms, ',')} --> {_timestamp(cue.end_ms, ',')}\n"
        + (f"{cue.speaker}: " if cue.speaker else "")
        + cue.text
        + "\n"
        for number, cue in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    """The escapes WebVTT cue text requires (`&`, `<`, `>`), so text can never open a tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT: `WEBVTT` header, `HH:MM:SS.mmm` times, `<v SPEAKER>` voice spans when known."""
    blocks = ["WEBVTT\n"] + [
        f"{_timestamp(cue.start_ms, '.')} --> {_timestamp(cue.end_ms, '.')}\n"
        + (f"<v {_vtt_escape(cue.speaker)}>" if cue.speaker else "")
        + _vtt_escape(cue.text)
        + "\n"
        for cue in cues
    ]
    return "\n".join(blocks)


# A document renderer: (segments, turns, file_id, words) -> the document.
Renderer = Callable[
    [Sequence[audio_pb2.Segment], Sequence[audio_pb2.SpeakerTurn], str, Sequence[audio_pb2.Word]], str
]
# The renderer of every format the table says carries a document (parakeet.formats.FORMATS).
RENDERERS: dict[str, Renderer] = {
    "text": lambda segments, _turns, _file_id, _words: render_text(segments),
    "srt": lambda segments, _turns, _file_id, words: render_srt(subtitle_cues(segments, words)),
    "vtt": lambda segments, _turns, _file_id, words: render_vtt(subtitle_cues(segments, words)),
    "rttm": lambda _segments, turns, file_id, _words: render_rttm(turns, file_id),
}


def render_document(
    response_format: int | str,
    segments: Sequence[audio_pb2.Segment],
    turns: Sequence[audio_pb2.SpeakerTurn] = (),
    file_id: str = "audio",
    words: Sequence[audio_pb2.Word] = (),
) -> str:
    """The `document` in `response_format` (an `audio_pb2.ResponseFormat` value or a name).

    JSON formats return "" because the structured fields already carry the data. RTTM renders
    `turns`; the others render `segments`, and SRT/VTT use `words` (optional) to split long
    cues. A value outside the table raises `parakeet.formats.UnsupportedFormat`.
    """
    row = resolve(response_format)
    if not row.document:
        return ""
    return RENDERERS[row.name](segments, turns, file_id, words)


def render_response(
    response: orchestrator_pb2.OrchestrateResponse, response_format: str | int, file_id: str = "audio"
) -> str:
    """`response` (asked with segments and words) as the document in `response_format`: what the
    orchestrator would have put in `document` had it been asked for that format."""
    return render_document(
        response_format, response.segments, response.speaker_turns, file_id, response.words
    )
