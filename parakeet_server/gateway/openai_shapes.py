"""OpenAI's audio API shapes <-> the orchestrator's messages; pure functions, no I/O.

Requests: the form fields of `POST /v1/audio/transcriptions` become one `OrchestrateRequest`.
Responses: the `OrchestrateResponse` becomes what the openai client parses for each
`response_format` (`Transcription`, `TranscriptionVerbose`, or the rendered document as text).

verbose_json adds `speaker` to every segment and word (null when the request did not diarize).
Fields OpenAI derives from Whisper's decoder and parakeet does not produce get neutral values
chosen so the usual quality heuristics never fire on them: `tokens` [], `temperature` 0.0
(greedy decoding), `avg_logprob` 0.0 (failed below -1), `compression_ratio` 0.0 (failed above
2.4), `no_speech_prob` 0.0, and `seek` 0 (the whole recording is one window).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from parakeet.v1 import audio_pb2, orchestrator_pb2
from parakeet_server.gateway.errors import GatewayError

# OpenAI's response_format names (and "rttm", this API's extension) -> the proto's enum.
RESPONSE_FORMATS: dict[str, audio_pb2.ResponseFormat] = {
    "json": audio_pb2.RESPONSE_FORMAT_JSON,
    "verbose_json": audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON,
    "text": audio_pb2.RESPONSE_FORMAT_TEXT,
    "srt": audio_pb2.RESPONSE_FORMAT_SRT,
    "vtt": audio_pb2.RESPONSE_FORMAT_VTT,
    "rttm": audio_pb2.RESPONSE_FORMAT_RTTM,
}
# Formats answered with the orchestrator's rendered `document` as text/plain.
DOCUMENT_FORMATS = frozenset({"text", "srt", "vtt", "rttm"})
WORD = "word"
SEGMENT = "segment"
GRANULARITIES = (WORD, SEGMENT)
OWNER = "nvidia"


@dataclass(frozen=True)
class TranscriptionForm:
    """The fields of one transcription request that reach the orchestrator, already parsed."""

    audio: bytes
    response_format: str = "json"
    timestamp_granularities: frozenset[str] = frozenset()
    language: str = ""
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError.for_code(grpc.StatusCode.INVALID_ARGUMENT, message, param=param)


def parse_response_format(value: str | None) -> str:
    """The format's short name; empty means json, as in OpenAI's API. Unknown names are refused."""
    name = (value or "json").strip().lower()
    if name not in RESPONSE_FORMATS:
        raise _invalid(
            f"unknown response_format {value!r}; use one of: {', '.join(RESPONSE_FORMATS)}",
            "response_format",
        )
    return name


def parse_granularities(values: Iterable[str]) -> frozenset[str]:
    """`timestamp_granularities[]` values; OpenAI accepts exactly "word" and "segment"."""
    names = frozenset(value.strip().lower() for value in values if value.strip())
    unknown = sorted(names - set(GRANULARITIES))
    if unknown:
        raise _invalid(
            f"unknown timestamp_granularities {', '.join(map(repr, unknown))}; use word and/or segment",
            "timestamp_granularities[]",
        )
    return names


def orchestrate_request(form: TranscriptionForm) -> orchestrator_pb2.OrchestrateRequest:
    """The one OrchestrateRequest a form turns into; the orchestrator validates everything else."""
    request = orchestrator_pb2.OrchestrateRequest(
        audio=audio_pb2.Audio(content=form.audio),
        language=form.language,
        timestamps=True,
        word_timestamps=WORD in form.timestamp_granularities,
        diarize=form.diarize,
        response_format=RESPONSE_FORMATS[form.response_format],
    )
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        value = getattr(form, name)
        if value is not None:
            setattr(request, name, value)
    return request


def _speaker(label: str) -> str | None:
    """Proto's "" (unknown) as JSON null, so a client can tell "not diarized" from a label."""
    return label or None


def _usage(response: orchestrator_pb2.OrchestrateResponse) -> dict[str, Any]:
    return {"type": "duration", "seconds": response.duration}


def transcription_json(response: orchestrator_pb2.OrchestrateResponse) -> dict[str, Any]:
    """response_format=json: OpenAI's `Transcription`."""
    return {"text": response.text, "usage": _usage(response)}


def verbose_segment(segment: audio_pb2.Segment) -> dict[str, Any]:
    """One OpenAI `TranscriptionSegment`, with the segment's speaker."""
    return {
        "id": segment.id,
        "seek": 0,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": 0.0,
        "compression_ratio": 0.0,
        "no_speech_prob": 0.0,
        "speaker": _speaker(segment.speaker),
    }


def verbose_word(word: audio_pb2.Word) -> dict[str, Any]:
    """One OpenAI `TranscriptionWord`, with the word's speaker."""
    return {"word": word.word, "start": word.start, "end": word.end, "speaker": _speaker(word.speaker)}


def transcription_verbose_json(
    response: orchestrator_pb2.OrchestrateResponse, granularities: Collection[str]
) -> dict[str, Any]:
    """response_format=verbose_json: OpenAI's `TranscriptionVerbose`.

    As in OpenAI's API, segments come by default and words only when asked for; asking for words
    alone leaves segments out.
    """
    document: dict[str, Any] = {
        "task": "transcribe",
        "language": response.language,
        "duration": response.duration,
        "text": response.text,
    }
    if not granularities or SEGMENT in granularities:
        document["segments"] = [verbose_segment(segment) for segment in response.segments]
    if WORD in granularities:
        document["words"] = [verbose_word(word) for word in response.words]
    document["usage"] = _usage(response)
    return document


def model_object(model_id: str, created: int) -> dict[str, Any]:
    """OpenAI's `Model`."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNER}


def model_list(model_id: str, created: int) -> dict[str, Any]:
    """`GET /v1/models`: OpenAI's list shape, with the one model this gateway serves."""
    return {"object": "list", "data": [model_object(model_id, created)]}
