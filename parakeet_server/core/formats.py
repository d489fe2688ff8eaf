"""The servers' side of documents: requested formats checked as gRPC refusals, and rendering.

The renderer itself (text, srt, vtt, rttm) is `parakeet.render` in the client package, one
implementation for the servers and for the client's batch runs (which render every asked format
from one verbose response); this module re-exports it and turns its format refusals into
`InvalidRequest`, so gRPC, RunPod and the gateway answer them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from parakeet import render
from parakeet.formats import FormatLike, ResponseFormat, Rpc, UnsupportedFormat, resolve
from parakeet.render import (
    MAX_CUE_CHARS,
    MAX_CUE_SECONDS,
    RENDERERS,
    Cue,
    Renderer,
    render_rttm,
    render_srt,
    render_text,
    render_vtt,
    subtitle_cues,
)
from parakeet.v1 import audio_pb2, orchestrator_pb2, transcription_pb2
from parakeet_server.core.errors import InvalidRequest

__all__ = [
    "MAX_CUE_CHARS",
    "MAX_CUE_SECONDS",
    "RENDERERS",
    "Cue",
    "Renderer",
    "render_document",
    "render_rttm",
    "render_srt",
    "render_text",
    "render_vtt",
    "requested_detail",
    "requested_format",
    "subtitle_cues",
]


def _checked(value: FormatLike, rpc: Rpc | None, speakers: bool) -> ResponseFormat:
    """The table's row for `value`; its refusal as an `InvalidRequest` with the table's message
    and reason, so gRPC, RunPod and the gateway all answer it the same way."""
    try:
        return resolve(value, rpc, speakers=speakers)
    except UnsupportedFormat as error:
        raise InvalidRequest(error.details, reason=error.reason) from None


def requested_format(
    value: FormatLike, rpc: Rpc | None, *, speakers: bool = True
) -> audio_pb2.ResponseFormat:
    """The format a request asks for if `rpc` (any RPC when None) renders it, else InvalidRequest.
    UNSPECIFIED comes back as JSON; `speakers` says whether the call finds speakers (rttm needs them)."""
    return _checked(value, rpc, speakers).value


def render_document(
    response_format: int,
    segments: Sequence[audio_pb2.Segment],
    turns: Sequence[audio_pb2.SpeakerTurn] = (),
    file_id: str = "audio",
    words: Sequence[audio_pb2.Word] = (),
) -> str:
    """`parakeet.render.render_document`; a value outside the table raises `InvalidRequest`
    (INVALID_ARGUMENT, UNSUPPORTED_FORMAT)."""
    _checked(response_format, None, speakers=True)
    return render.render_document(response_format, segments, turns, file_id, words)


def requested_detail(
    request: transcription_pb2.TranscribeRequest | orchestrator_pb2.OrchestrateRequest,
) -> tuple[bool, bool]:
    """(segments, words) a request asks back: segments unless timestamps=false, words when
    word_timestamps is set or the format is verbose_json."""
    segments = not request.HasField("timestamps") or request.timestamps
    words = request.word_timestamps or request.response_format == audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON
    return segments, words
