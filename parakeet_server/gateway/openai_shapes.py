"""OpenAI's audio API shapes <-> the orchestrator's messages; pure functions, no I/O.

Requests: the form fields of `POST /v1/audio/transcriptions` become one `OrchestrateRequest`.
Responses: the `OrchestrateResponse` becomes what the openai client parses for each
`response_format` (`Transcription`, `TranscriptionVerbose`, or the rendered document as text).
The format names are the one table's (`parakeet.formats`), which OpenAI's are a subset of (rttm
is this API's extension).

verbose_json adds `speaker` to every segment and word (null when the request did not diarize).
diarized_json (OpenAI's `TranscriptionDiarized`, which turns diarization on) lists one segment per
utterance (consecutive words of one speaker): `speaker` is the known speaker's name when one was
matched, else this API's own label (SPEAKER_00, SPEAKER_01, ...; not OpenAI's "A", "B"), so the
labels read the same in every format and in the orchestrator's answer.
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

from parakeet import formats
from parakeet.client import hotword_messages
from parakeet.v1 import audio_pb2, orchestrator_pb2
from parakeet_server.gateway.errors import GatewayError

WORD = "word"
# OpenAI's speaker-segment format (not in `parakeet.formats`: it is this gateway's JSON shape of
# the orchestrator's utterances), and the type of its segments (also SSE's segment event).
DIARIZED_JSON = "diarized_json"
DIARIZED_SEGMENT = "transcript.text.segment"
SEGMENT = "segment"
GRANULARITIES = (WORD, SEGMENT)
OWNER = "nvidia"


@dataclass(frozen=True)
class TranscriptionForm:
    """The fields of one transcription request that reach the orchestrator, already parsed.

    `timestamps` and `speakers_optional` are this API's extensions, the OrchestrateRequest fields
    of the same names: `timestamps=false` asks for no segments (None: segments as OpenAI's
    granularities say), `speakers_optional=true` answers without speakers, and says why in the
    warnings header, when diarization fails."""

    audio: bytes
    response_format: formats.ResponseFormat = formats.DEFAULT
    timestamp_granularities: frozenset[str] = frozenset()
    language: str = ""
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    timestamps: bool | None = None
    speakers_optional: bool = False
    # PHRASE[:BOOST] as the CLI's --hotword takes them; multichannel: each channel on its own.
    hotwords: tuple[str, ...] = ()
    multichannel: bool = False
    # Known speakers (gateway/known_speakers.py), named among those diarization finds.
    known_speakers: tuple[audio_pb2.KnownSpeaker, ...] = ()
    speaker_match_threshold: float | None = None
    # response_format=diarized_json: `response_format` is then json (the orchestrator renders nothing).
    diarized_json: bool = False


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError.for_code(grpc.StatusCode.INVALID_ARGUMENT, message, param=param)


def is_diarized_json(value: str | None) -> bool:
    return (value or "").strip().lower() == DIARIZED_JSON


def parse_response_format(value: str | None, diarize: bool) -> formats.ResponseFormat:
    """The format's row in the one table (`parakeet.formats`); empty means json, as in OpenAI's
    API, and diarized_json asks the orchestrator for json (its utterances are reshaped here).
    A format the orchestrator would refuse (unknown, or rttm without diarize) is refused here
    with its message and reason, before the upload goes anywhere."""
    if is_diarized_json(value):
        return formats.DEFAULT
    try:
        return formats.resolve(value, formats.Rpc.ORCHESTRATE, speakers=diarize)
    except formats.UnsupportedFormat as error:
        raise GatewayError.for_reason(
            error.reason, f"{error.details}, {DIARIZED_JSON}", param="response_format"
        ) from None


def check_timestamps(timestamps: bool | None, granularities: Collection[str]) -> None:
    """`timestamps=false` leaves segments out, so it cannot come with the "segment" granularity."""
    if timestamps is False and SEGMENT in granularities:
        raise _invalid(
            'timestamps=false leaves segments out: drop it, or drop "segment" from timestamp_granularities',
            "timestamps",
        )


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
        timestamps=form.timestamps is not False,
        word_timestamps=WORD in form.timestamp_granularities,
        diarize=form.diarize,
        response_format=form.response_format.value,
        speakers_optional=form.speakers_optional,
        hotwords=hotword_messages(form.hotwords),
        multichannel=form.multichannel,
        known_speakers=form.known_speakers,
        speaker_match_threshold=form.speaker_match_threshold,
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
    response: orchestrator_pb2.OrchestrateResponse, granularities: Collection[str], timestamps: bool = True
) -> dict[str, Any]:
    """response_format=verbose_json: OpenAI's `TranscriptionVerbose`.

    As in OpenAI's API, segments come by default and words only when asked for; asking for words
    alone leaves segments out, and so does `timestamps=false` (this API's extension).
    """
    document: dict[str, Any] = {
        "task": "transcribe",
        "language": response.language,
        "duration": response.duration,
        "text": response.text,
    }
    if timestamps and (not granularities or SEGMENT in granularities):
        document["segments"] = [verbose_segment(segment) for segment in response.segments]
    if WORD in granularities:
        document["words"] = [verbose_word(word) for word in response.words]
    document["usage"] = _usage(response)
    return document


def diarized_segment(segment_id: str, start: float, end: float, speaker: str, text: str) -> dict[str, Any]:
    """One OpenAI `TranscriptionDiarizedSegment`; SSE's `transcript.text.segment` event is the same object."""
    return {
        "type": DIARIZED_SEGMENT,
        "id": segment_id,
        "start": start,
        "end": end,
        "speaker": speaker,
        "text": text,
    }


def diarized_segment_id(index: int) -> str:
    """A diarized segment's id, from its utterance's index (the same ids with and without stream)."""
    return f"seg_{index}"


def transcription_diarized_json(response: orchestrator_pb2.OrchestrateResponse) -> dict[str, Any]:
    """response_format=diarized_json: OpenAI's `TranscriptionDiarized`, a segment per utterance.

    When diarization was skipped (speakers_optional, and it failed: the warnings header says so)
    there are no utterances, and the transcript's segments stand in with an empty speaker."""
    runs = [(u.start, u.end, u.speaker, u.text) for u in response.utterances] or [
        (s.start, s.end, s.speaker, s.text) for s in response.segments
    ]
    return {
        "task": "transcribe",
        "duration": response.duration,
        "text": response.text,
        "segments": [
            diarized_segment(diarized_segment_id(index), start, end, speaker, text.strip())
            for index, (start, end, speaker, text) in enumerate(runs)
        ],
        "usage": _usage(response),
    }


def model_object(model_id: str, created: int) -> dict[str, Any]:
    """OpenAI's `Model`."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNER}


def model_list(model_id: str, created: int) -> dict[str, Any]:
    """`GET /v1/models`: OpenAI's list shape, with the one model this gateway serves."""
    return {"object": "list", "data": [model_object(model_id, created)]}
