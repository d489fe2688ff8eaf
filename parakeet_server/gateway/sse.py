"""`POST /v1/audio/transcriptions` with `stream=true`: the upload as server-sent events.

The events are the openai client's `TranscriptionStreamEvent`s, one JSON object per `data:` line
(with an `event:` line naming its type, which the client ignores):

- `transcript.text.delta` {delta}: each final result of the orchestrator's live stream, in
  order, with a space before every final but the first, so the deltas join into the transcript.
  With `response_format=diarized_json` it carries `segment_id`, the segment it belongs to.
- `transcript.text.segment` {id, start, end, speaker, text}: with `response_format=diarized_json`
  (which turns diarization on), each final as a segment with its speaker, after its delta (the
  same object as a segment of the non-streamed diarized_json: `openai_shapes.diarized_segment`).
  `speaker` is a known speaker's name when one matched, else SPEAKER_NN.
- `transcript.text.done` {text}: the deltas joined, once the stream ends; parakeet's extensions
  `duration`, `speakers`, `num_speakers`, `warnings` and `model` carry the stream's summary
  (`usage` is left out: OpenAI's is counted in tokens, which parakeet does not bill).
- `error` {error: {message, type, param, code, reason}}: a failure after the events began (the
  openai client raises it as `APIError`); the response ends after it. A stream that fails after
  its summary (a live limit: the finals up to the limit, then the error) sends the error
  instead of `done`, so a client that stops at `done` never takes a cut transcript for a whole one.

Hotwords (`hotwords[]`) and known speakers (`known_speaker_names[]` + `known_speaker_references[]`,
`known_speaker_voiceprints[]`) go into the StreamingConfig as they go into Orchestrate; a
live path that cannot use them refuses them with its own reason before any event.

The file goes to `StreamingOrchestrate` as a container byte stream (the orchestrator decodes it
as it arrives), read only as fast as gRPC flow control allows. The response starts with the
orchestrator's first message, so anything refused before it (auth, limits, an undecodable file,
an impossible speaker count) is the same JSON error, with the same HTTP status, as without
`stream`. A client that goes away cancels the live stream at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from parakeet import formats
from parakeet.client import streaming_config as client_streaming_config
from parakeet.v1 import audio_pb2, orchestrator_pb2, streaming_pb2
from parakeet_server.gateway.errors import GatewayError
from parakeet_server.gateway.openai_shapes import DIARIZED_JSON, diarized_segment, diarized_segment_id
from parakeet_server.gateway.orchestrator_client import Metadata, OrchestratorClient

log = logging.getLogger(__name__)

DELTA = "transcript.text.delta"
DONE = "transcript.text.done"
ERROR = "error"
# The formats a stream accepts: the events are the same for json and text (OpenAI's streaming
# models take these), diarized_json adds segments.
STREAM_FORMATS = ("json", "text", DIARIZED_JSON)
# How much of the upload goes in one StreamingOrchestrateRequest.
CHUNK_BYTES = 64 * 1024
MEDIA_TYPE = "text/event-stream"
# No caching, and no buffering by proxies (nginx reads X-Accel-Buffering), so events go out as made.
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(frozen=True)
class StreamForm:
    """What a streamed transcription asks of the orchestrator, already parsed."""

    audio: bytes
    segments: bool = False
    language: str = ""
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    speakers_optional: bool = False
    # PHRASE[:BOOST] to favour, and known speakers to name (gateway/known_speakers.py).
    hotwords: tuple[str, ...] = ()
    known_speakers: tuple[audio_pb2.KnownSpeaker, ...] = ()
    speaker_match_threshold: float | None = None


def stream_form(
    audio: bytes,
    response_format: str | None,
    *,
    language: str = "",
    diarize: bool = False,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    speakers_optional: bool = False,
    hotwords: tuple[str, ...] = (),
    known_speakers: tuple[audio_pb2.KnownSpeaker, ...] = (),
    speaker_match_threshold: float | None = None,
) -> StreamForm:
    """The form of a `stream=true` request; a format that has no events is refused (UNSUPPORTED_FORMAT)
    before the upload goes anywhere, as is an empty file. diarized_json diarizes whether or not `diarize` is sent."""
    if not audio:
        # The non-streaming route refuses it so (core/audio.py); a stream would end with no words.
        raise GatewayError.for_reason("AUDIO_MISSING", "audio is empty (0 bytes)", param="file")
    name = (response_format or "json").strip().lower()
    if name not in STREAM_FORMATS:
        known = name in formats.names() or name == DIARIZED_JSON
        why = "it renders a whole document" if known else "it does not exist"
        raise GatewayError.for_reason(
            formats.REASON,
            f"stream=true has no response_format {response_format!r} ({why}); use one of: "
            f"{', '.join(STREAM_FORMATS)} (diarized_json adds speaker segments), or leave stream out",
            param="response_format",
        )
    segments = name == DIARIZED_JSON
    return StreamForm(
        audio=audio,
        segments=segments,
        language=language,
        diarize=diarize or segments,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        speakers_optional=speakers_optional,
        hotwords=hotwords,
        known_speakers=known_speakers,
        speaker_match_threshold=speaker_match_threshold,
    )


def streaming_config(form: StreamForm) -> streaming_pb2.StreamingConfig:
    """The stream's config: the file as a container to decode; no interims (SSE sends finals only)."""
    return client_streaming_config(
        streaming_pb2.StreamingAudioFormat(encoding=streaming_pb2.AUDIO_ENCODING_CONTAINER),
        language=form.language,
        interim_results=False,
        word_timestamps=False,
        diarize=form.diarize,
        speakers_optional=form.speakers_optional,
        num_speakers=form.num_speakers,
        min_speakers=form.min_speakers,
        max_speakers=form.max_speakers,
        hotwords=form.hotwords,
        known_speakers=form.known_speakers,
        speaker_match_threshold=form.speaker_match_threshold,
    )


async def stream_requests(form: StreamForm) -> AsyncIterator[orchestrator_pb2.StreamingOrchestrateRequest]:
    """The config, then the file in chunks, each made when gRPC pulls it (as flow control lets it:
    ~4 MB ahead of an orchestrator that reads nothing, tests/gateway/test_backpressure.py)."""
    yield orchestrator_pb2.StreamingOrchestrateRequest(config=streaming_config(form))
    data = memoryview(form.audio)
    for start in range(0, len(data), CHUNK_BYTES):
        yield orchestrator_pb2.StreamingOrchestrateRequest(audio=bytes(data[start : start + CHUNK_BYTES]))


@dataclass
class TranscriptEvents:
    """Turns the orchestrator's stream messages into the openai client's events, in order."""

    segments: bool = False
    texts: list[str] = field(default_factory=list)

    def on(self, response: orchestrator_pb2.StreamingOrchestrateResponse) -> list[dict[str, Any]]:
        """The events one message makes: a final -> delta (and segment), the summary -> done."""
        kind = response.WhichOneof("event")
        if kind == "final_result":
            return self._final(response.final_result)
        if kind == "summary":
            return [self._done(response.summary)]
        return []  # interims may still change, speech events and progress have no OpenAI event

    def _final(self, final: streaming_pb2.FinalResult) -> list[dict[str, Any]]:
        text = final.text.strip()
        if not text:
            return []
        delta: dict[str, Any] = {"type": DELTA, "delta": f" {text}" if self.texts else text}
        self.texts.append(text)
        if not self.segments:
            return [delta]
        segment_id = diarized_segment_id(final.utterance_index)
        delta["segment_id"] = segment_id
        return [delta, diarized_segment(segment_id, final.start, final.end, final.speaker, text)]

    def _done(self, summary: streaming_pb2.StreamingSummary) -> dict[str, Any]:
        return {
            "type": DONE,
            "text": " ".join(self.texts),
            "duration": summary.duration,
            "speakers": list(summary.speakers),
            "num_speakers": summary.num_speakers,
            "warnings": list(summary.warnings),
            "model": summary.model,
        }


def error_event(error: GatewayError) -> dict[str, Any]:
    """An `error` event: OpenAI's error body with a type, which the openai client raises as APIError."""
    return {"type": ERROR, **error.body()}


def encode(event: dict[str, Any]) -> bytes:
    """One server-sent event: its type and its JSON on one `data:` line (JSON escapes newlines)."""
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def _close(stream: AsyncIterator[Any]) -> None:
    """Closes an async generator now (its `finally` cancels the RPC); other iterators have nothing to close."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def _events(
    upstream: AsyncIterator[orchestrator_pb2.StreamingOrchestrateResponse],
    first: orchestrator_pb2.StreamingOrchestrateResponse,
    events: TranscriptEvents,
) -> AsyncGenerator[bytes, None]:
    """The response body: the events of `first` and of every later message; an error ends it."""
    done: dict[str, Any] | None = None
    try:
        response: orchestrator_pb2.StreamingOrchestrateResponse | None = first
        while response is not None:
            for event in events.on(response):
                if event["type"] == DONE:
                    done = event  # held until the stream ends: a limit's error comes after the summary
                else:
                    yield encode(event)
            response = await anext(upstream, None)
        if done is None:
            raise GatewayError.for_code(
                grpc.StatusCode.INTERNAL, "the orchestrator ended the stream without its summary"
            )
        yield encode(done)
    except GatewayError as error:
        log.info("a streamed transcription failed after its events began: %s", error.message)
        yield encode(error_event(error))
    finally:
        await _close(upstream)


async def respond(client: OrchestratorClient, form: StreamForm, metadata: Metadata) -> StreamingResponse:
    """The event stream, begun once the orchestrator has answered; a refusal before that raises
    the GatewayError (a JSON error response, as without stream)."""
    upstream = client.stream(stream_requests(form), metadata)
    try:
        first = await anext(upstream)
    except StopAsyncIteration:
        raise GatewayError.for_code(
            grpc.StatusCode.INTERNAL, "the orchestrator ended the stream before any result"
        ) from None
    except BaseException:  # a refusal (GatewayError, with the orchestrator's reason: the bridge keeps it)
        await _close(upstream)
        raise
    body = _events(upstream, first, TranscriptEvents(segments=form.segments))
    # The body's own `finally` closes the upstream when it ends or is cancelled (the client went
    # away); the background task does so too when the body was never started.
    return StreamingResponse(
        body, media_type=MEDIA_TYPE, headers=HEADERS, background=BackgroundTask(body.aclose)
    )
