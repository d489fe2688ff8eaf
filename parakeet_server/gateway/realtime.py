"""`GET /v1/realtime?intent=transcription`: live transcription over a WebSocket, shaped like OpenAI's
Realtime API in transcription mode; a thin adapter over the orchestrator's StreamingOrchestrate.

One socket carries one audio stream. The client may send `transcription_session.update` (or
`session.update`) before its first audio, then `input_audio_buffer.append` events (base64 pcm16,
mono, `input_audio_sample_rate` Hz, 24000 by default as OpenAI's pcm16), then
`input_audio_buffer.commit` when the audio ends. The server answers with
`transcription_session.created`/`.updated` (the session it will use), `input_audio_buffer.speech_started`,
`...speech_stopped` and `...committed`, `conversation.item.input_audio_transcription.delta` (interim
text: `delta` is what was appended, empty when the engine revised earlier words; `text` is the
whole interim) and `...completed` (a final: `transcript`, plus `speaker`, `start`, `end`, `words`),
then `transcription_session.done` (duration, speakers, warnings, model) and closes with 1000.
Each final is one item, `item_<utterance_index>`; an utterance the diarizer splits between two
speakers gives two items.

Auth is the HTTP routes' (`app.check_authorization`): `Authorization: Bearer <token>`, or for
browsers the subprotocols `realtime, openai-insecure-api-key.<token>` (accepted as `realtime`).
A malformed event gets an `error` event and the socket stays usable; a fatal one (auth, limits,
the orchestrator's refusal or failure) gets an `error` event and close code 4000 + the HTTP
status its reason maps to (errors.http_status_for), the message as the close reason.

Back-pressure: appended audio waits in a bounded queue for the gRPC stream, which grpc.aio writes
only as HTTP/2 flow control allows; while the queue is full the socket is not read, so TCP slows
the client (uvicorn reads no further message until this one is received; permessage-deflate is
declined, so what TCP holds is audio, not silence compressed 500:1; tests/gateway/test_backpressure.py).
Nothing is dropped. A client that goes away cancels the upstream stream at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import grpc
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from parakeet.client import hotword_messages
from parakeet.v1 import audio_pb2, orchestrator_pb2, streaming_pb2
from parakeet_server.core.logs import REQUEST_ID_KEY
from parakeet_server.gateway.app import check_authorization
from parakeet_server.gateway.config import GatewayConfig
from parakeet_server.gateway.errors import GatewayError
from parakeet_server.gateway.known_speakers import session_known_speakers
from parakeet_server.gateway.orchestrator_client import OrchestratorClient

log = logging.getLogger(__name__)

router = APIRouter()

REALTIME_PATH = "/v1/realtime"
SUBPROTOCOL = "realtime"
# OpenAI's convention for browsers, which cannot set an Authorization header on a WebSocket.
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
DEFAULT_SAMPLE_RATE = 24_000  # OpenAI's pcm16
DEFAULT_SILENCE_MS = 400  # the orchestrator's default endpoint silence (streaming.proto)
MAX_SAMPLE_RATE = 384_000
CLOSE_NORMAL = 1000
CLOSE_REASON_BYTES = 123  # a close frame's reason is at most 123 bytes of UTF-8
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SESSION_UPDATES = ("transcription_session.update", "session.update")
CLIENT_EVENTS = (*SESSION_UPDATES, "input_audio_buffer.append", "input_audio_buffer.commit")
Request = orchestrator_pb2.StreamingOrchestrateRequest
Response = orchestrator_pb2.StreamingOrchestrateResponse


def _invalid(message: str, param: str | None = None, reason: str = "INVALID_FIELD") -> GatewayError:
    return GatewayError.for_reason(reason, message, param)


def _whole(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid(f"session.{name} must be a whole number of at least {minimum}, not {value!r}", name)
    if maximum is not None and value > maximum:
        raise _invalid(f"session.{name} must be at most {maximum}, not {value!r}", name)
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(f"session.{name} must be true or false, not {value!r}", name)
    return value


@dataclass(frozen=True)
class SessionSettings:
    """What the session asked for, in the orchestrator's terms (the StreamingConfig it becomes)."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    language: str = ""
    silence_ms: int = 0
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    speakers_optional: bool = False
    interim_results: bool = True
    # Extensions: PHRASE[:BOOST] to favour; known speakers to name (gateway/known_speakers.py).
    hotwords: tuple[str, ...] = ()
    known_speakers: tuple[audio_pb2.KnownSpeaker, ...] = ()

    def updated(self, fields: Mapping[str, Any]) -> tuple[SessionSettings, list[str]]:
        """These settings with a session.update's fields applied, and the names it ignored; a
        GatewayError (INVALID_FIELD, naming the field) when a value cannot be used."""
        changes: dict[str, Any] = {}
        ignored: list[str] = []
        for name, value in fields.items():
            if name == "input_audio_format":
                if value != "pcm16":
                    raise _invalid(
                        f"session.input_audio_format {value!r} is not supported: send 'pcm16' "
                        "(16-bit little-endian mono PCM at input_audio_sample_rate Hz)",
                        name,
                    )
            elif name == "input_audio_sample_rate":
                changes["sample_rate"] = _whole(value, name, 8000, MAX_SAMPLE_RATE)
            elif name == "input_audio_transcription":
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise _invalid(f"session.{name} must be an object, not {value!r}", name)
                language = value.get("language") or ""
                if not isinstance(language, str):
                    raise _invalid(f"session.{name}.language must be a string, not {language!r}", name)
                changes["language"] = language
                ignored += [f"{name}.{key}" for key in value if key not in ("model", "language")]
            elif name == "turn_detection":
                changes["silence_ms"] = self._silence(value)
            elif name in ("diarize", "speakers_optional", "interim_results"):
                changes[name] = _flag(value, name)
            elif name in ("num_speakers", "min_speakers", "max_speakers"):
                changes[name] = None if value is None else _whole(value, name, 1)
            elif name == "hotwords":
                if value is not None and (
                    not isinstance(value, list) or not all(isinstance(item, str) for item in value)
                ):
                    raise _invalid(
                        f"session.hotwords must be a list of 'PHRASE[:BOOST]' strings, not {value!r}", name
                    )
                changes[name] = tuple(value or ())
            elif name == "known_speakers":
                changes[name] = session_known_speakers(value, name)
            else:
                ignored.append(name)
        return replace(self, **changes), ignored

    @staticmethod
    def _silence(value: Any) -> int:
        if value is None:
            return 0
        if not isinstance(value, dict) or value.get("type", "server_vad") != "server_vad":
            raise _invalid(
                f"session.turn_detection must be {{'type': 'server_vad', 'silence_duration_ms': N}} "
                f"(the server ends utterances itself), not {value!r}",
                "turn_detection",
            )
        silence = value.get("silence_duration_ms")
        return 0 if silence is None else _whole(silence, "turn_detection.silence_duration_ms", 0)

    def config(self) -> streaming_pb2.StreamingConfig:
        config = streaming_pb2.StreamingConfig(
            audio_format=streaming_pb2.StreamingAudioFormat(
                encoding=streaming_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=self.sample_rate, channels=1
            ),
            language=self.language,
            interim_results=self.interim_results,
            word_timestamps=True,
            diarize=self.diarize,
            endpoint_silence_ms=self.silence_ms,
            speakers_optional=self.speakers_optional,
            hotwords=hotword_messages(self.hotwords),
            known_speakers=self.known_speakers,
        )
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            if getattr(self, name) is not None:
                setattr(config, name, getattr(self, name))
        return config

    def echo(self, model_id: str) -> dict[str, Any]:
        """The session as it will run (defaults filled in), for created/updated events."""
        return {
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16",
            "input_audio_sample_rate": self.sample_rate,
            "input_audio_transcription": {"model": model_id, "language": self.language or "en"},
            "turn_detection": {
                "type": "server_vad",
                "silence_duration_ms": self.silence_ms or DEFAULT_SILENCE_MS,
            },
            "diarize": self.diarize,
            "num_speakers": self.num_speakers,
            "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers,
            "speakers_optional": self.speakers_optional,
            "interim_results": self.interim_results,
            "hotwords": list(self.hotwords),
            "known_speakers": [speaker.name for speaker in self.known_speakers],
        }


def error_event(error: GatewayError, event_id: str | None = None) -> dict[str, Any]:
    """OpenAI's realtime `error` event; `code` is the reason (INVALID_FIELD, UNAUTHENTICATED, ...)."""
    return {
        "type": "error",
        "error": {
            "type": error.error_type,
            "code": error.reason,
            "message": error.message,
            "param": error.param,
            "event_id": event_id,
        },
    }


def close_reason(message: str) -> str:
    """The message cut to what a close frame carries (123 bytes of UTF-8, whole characters)."""
    return message.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")


def _item(index: int) -> str:
    return f"item_{index}"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _words(final: streaming_pb2.FinalResult) -> list[dict[str, Any]]:
    return [
        {
            "word": word.word,
            "start": word.start,
            "end": word.end,
            "confidence": word.confidence if word.HasField("confidence") else None,
            "speaker": word.speaker,
        }
        for word in final.words
    ]


class _Socket:
    """Sends JSON events (numbered event ids) one at a time, from the reader and the upstream alike."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._lock = asyncio.Lock()
        self._ids = itertools.count()

    async def send(self, event: dict[str, Any]) -> None:
        event = {"event_id": f"event_{next(self._ids)}", **event}
        async with self._lock:
            await self.websocket.send_text(json.dumps(event))

    async def fail(self, error: GatewayError, event_id: str | None = None) -> None:
        """A fatal error: the error event, then close code 4000 + its HTTP status."""
        await self.send(error_event(error, event_id))
        await self.websocket.close(4000 + error.status, close_reason(error.message))


class RealtimeSession:
    """One socket's stream: reads client events, feeds the upstream stream, turns results into events."""

    def __init__(
        self,
        socket: _Socket,
        client: OrchestratorClient,
        settings: GatewayConfig,
        metadata: list[tuple[str, str]],
    ) -> None:
        self.socket = socket
        self.client = client
        self.settings = settings
        self.metadata = metadata
        self.session = SessionSettings()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=settings.ws_queue_messages)
        self._upstream: asyncio.Task[None] | None = None
        self._committed = False
        # Set once by whoever ends the session: None after the summary, else the fatal error.
        self._ended: asyncio.Future[GatewayError | None] = asyncio.get_running_loop().create_future()
        # Results state: finals sent (the next item's index), the current interim, speech under way.
        self._finals = 0
        self._interim = ""
        self._speaking = False

    async def run(self) -> None:
        await self.socket.send(
            {"type": "transcription_session.created", "session": self.session.echo(self.settings.model_id)}
        )
        reader = asyncio.create_task(self._read())
        try:
            waited: set[asyncio.Future[Any]] = {reader, self._ended}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            if not self._ended.done():
                return  # the client went away: the finally cancels the upstream stream
            reader.cancel()
            error = self._ended.result()
            if error is None:
                await self.socket.websocket.close(CLOSE_NORMAL)
            else:
                await self.socket.fail(error)
        finally:
            for task in (reader, self._upstream):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    def _end(self, error: GatewayError | None) -> None:
        if not self._ended.done():
            self._ended.set_result(error)

    # -- the client's side ------------------------------------------------------------------

    async def _read(self) -> None:
        """Client events until it disconnects (returns) or sends something fatal (ends the session)."""
        limit = self.settings.ws_max_message_bytes
        while True:
            try:
                if self._upstream is None:
                    message = await asyncio.wait_for(
                        self.socket.websocket.receive(), self.settings.ws_first_audio_timeout_s
                    )
                else:
                    message = await self.socket.websocket.receive()
            except TimeoutError:
                self._end(
                    GatewayError.for_code(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"no audio came within {self.settings.ws_first_audio_timeout_s:g} s of connecting; "
                        "send input_audio_buffer.append events",
                    )
                )
                return
            if message["type"] == "websocket.disconnect":
                return
            text, data = message.get("text"), message.get("bytes")
            size = len(text.encode()) if text is not None else len(data or b"")
            if size > limit:
                self._end(
                    _invalid(
                        f"a message of {size} bytes is larger than this server's limit of {limit} bytes; "
                        "send the audio in smaller input_audio_buffer.append events",
                        reason="PAYLOAD_TOO_LARGE",
                    )
                )
                return
            if text is None:
                await self._refuse(
                    _invalid("binary frames are not part of this protocol: send JSON text events")
                )
                continue
            try:
                event = json.loads(text)
            except ValueError as error:
                await self._refuse(
                    _invalid(f"an event must be a JSON object; this one is not JSON ({error})")
                )
                continue
            if not isinstance(event, dict):
                await self._refuse(_invalid(f"an event must be a JSON object, not {type(event).__name__}"))
                continue
            await self._handle(event)

    async def _refuse(self, error: GatewayError, event_id: str | None = None) -> None:
        """A client event that cannot be used: an error event; the socket stays open."""
        await self.socket.send(error_event(error, event_id))

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if kind in SESSION_UPDATES:
            await self._update(event.get("session"), event_id)
        elif kind == "input_audio_buffer.append":
            await self._append(event.get("audio"), event_id)
        elif kind == "input_audio_buffer.commit":
            if self._committed:
                await self._refuse(_invalid("the audio was already committed", "type"), event_id)
                return
            self._committed = True
            self._start_upstream()
            await self._queue.put(None)
        elif kind == "input_audio_buffer.clear":
            await self._refuse(
                _invalid(
                    "input_audio_buffer.clear is not supported: audio is transcribed as it arrives, so "
                    "there is no buffer to clear; open a new session to start over",
                    "type",
                ),
                event_id,
            )
        else:
            await self._refuse(
                _invalid(
                    f"unknown event type {kind!r}; this server accepts {', '.join(CLIENT_EVENTS)}", "type"
                ),
                event_id,
            )

    async def _update(self, fields: Any, event_id: str | None) -> None:
        if self._upstream is not None:
            error = _invalid(
                "the session is already streaming: send transcription_session.update before the first audio",
                "session",
                reason="STREAM_PROTOCOL",
            )
            await self._refuse(error, event_id)
            return
        if not isinstance(fields, dict):
            await self._refuse(_invalid(f"'session' must be an object, not {fields!r}", "session"), event_id)
            return
        try:
            self.session, ignored = self.session.updated(fields)
        except GatewayError as error:
            await self._refuse(error, event_id)
            return
        update: dict[str, Any] = {
            "type": "transcription_session.updated",
            "session": self.session.echo(self.settings.model_id),
        }
        if ignored:
            update["ignored"] = ignored
        await self.socket.send(update)

    async def _append(self, audio: Any, event_id: str | None) -> None:
        if self._committed:
            await self._refuse(
                _invalid("the audio was committed: a session carries one stream", "type", "STREAM_PROTOCOL"),
                event_id,
            )
            return
        if not isinstance(audio, str):
            await self._refuse(_invalid("'audio' must be a base64 string of pcm16 bytes", "audio"), event_id)
            return
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as error:
            await self._refuse(
                _invalid(f"'audio' is not valid base64 ({error})", "audio", "INVALID_BASE64"), event_id
            )
            return
        if len(data) % 2:
            await self._refuse(
                _invalid(
                    f"'audio' holds {len(data)} bytes; pcm16 samples are 2 bytes each, so an append "
                    "must hold an even number of bytes (this one was not used)",
                    "audio",
                    "AUDIO_ENCODING",
                ),
                event_id,
            )
            return
        if data:
            self._start_upstream()
            await self._queue.put(data)  # waits while the queue is full: the socket is not read meanwhile

    # -- the orchestrator's side --------------------------------------------------------------

    def _start_upstream(self) -> None:
        if self._upstream is None:
            self._upstream = asyncio.create_task(self._pump())

    async def _requests(self) -> AsyncIterator[Request]:
        yield Request(config=self.session.config())
        while (chunk := await self._queue.get()) is not None:
            yield Request(audio=chunk)

    async def _pump(self) -> None:
        try:
            async with contextlib.aclosing(self.client.stream(self._requests(), self.metadata)) as responses:
                async for response in responses:
                    await self._on_response(response)
        except GatewayError as error:
            log.info("realtime stream ended by the orchestrator: %s (%s)", error.message, error.reason)
            self._end(error)
        except (WebSocketDisconnect, OSError):
            log.info("realtime client went away; its stream is cancelled")
            self._end(None)
        except Exception as error:  # a bug: say so
            log.warning("realtime stream failed", exc_info=error)
            self._end(
                GatewayError.for_code(
                    grpc.StatusCode.INTERNAL, "internal error in the gateway's realtime session; see its log"
                )
            )
        else:
            self._end(None)

    async def _on_response(self, response: Response) -> None:
        kind = response.WhichOneof("event")
        item = _item(self._finals)
        if kind == "interim":
            await self._on_interim(response.interim, item)
        elif kind == "final_result":
            await self._on_final(response.final_result)
        elif kind == "speech_event":
            if response.speech_event.type == streaming_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED:
                await self._speech_started(response.speech_event.time, item)
        elif kind == "summary":
            summary = response.summary
            await self.socket.send(
                {
                    "type": "transcription_session.done",
                    "duration": summary.duration,
                    "speakers": list(summary.speakers),
                    "num_speakers": summary.num_speakers,
                    "num_items": summary.num_finals,
                    "warnings": list(summary.warnings),
                    "model": summary.model,
                }
            )

    async def _speech_started(self, time_s: float, item: str) -> None:
        if not self._speaking:
            self._speaking = True
            await self.socket.send(
                {"type": "input_audio_buffer.speech_started", "audio_start_ms": _ms(time_s), "item_id": item}
            )

    async def _on_interim(self, interim: streaming_pb2.InterimResult, item: str) -> None:
        await self._speech_started(interim.start, item)
        text = interim.text
        if text == self._interim:
            return
        delta = text[len(self._interim) :] if text.startswith(self._interim) else ""
        self._interim = text
        event: dict[str, Any] = {
            "type": "conversation.item.input_audio_transcription.delta",
            "item_id": item,
            "content_index": 0,
            "delta": delta,
            "text": text,
        }
        if interim.HasField("stability"):
            event["stability"] = interim.stability
        await self.socket.send(event)

    async def _on_final(self, final: streaming_pb2.FinalResult) -> None:
        """OpenAI's order: speech_stopped (once per utterance), committed, then completed."""
        item = _item(final.utterance_index)
        self._finals = final.utterance_index + 1
        self._interim = ""
        if self._speaking:
            self._speaking = False
            await self.socket.send(
                {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": _ms(final.end), "item_id": item}
            )
        previous = _item(final.utterance_index - 1) if final.utterance_index else None
        await self.socket.send(
            {"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": previous}
        )
        await self.socket.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "content_index": 0,
                "transcript": final.text,
                "speaker": final.speaker,
                "start": final.start,
                "end": final.end,
                "words": _words(final),
            }
        )


def _authorization_header(websocket: WebSocket, offered: list[str]) -> str:
    """The Authorization header, else the token a browser put in its subprotocols (never the URL)."""
    header = websocket.headers.get("authorization", "")
    if not header:
        keys = [
            name.removeprefix(KEY_SUBPROTOCOL_PREFIX)
            for name in offered
            if name.startswith(KEY_SUBPROTOCOL_PREFIX)
        ]
        if keys:
            header = f"Bearer {keys[0]}"
    return header


@router.websocket(REALTIME_PATH)
async def realtime(websocket: WebSocket) -> None:
    """One live transcription session (see the module docstring for the protocol)."""
    settings = websocket.app.state.settings
    client = websocket.app.state.orchestrator
    assert isinstance(settings, GatewayConfig) and isinstance(client, OrchestratorClient)
    offered = [name.strip() for name in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    socket = _Socket(websocket)
    sent_id = websocket.headers.get(REQUEST_ID_KEY, "")
    request_id = sent_id if _REQUEST_ID.fullmatch(sent_id) else uuid.uuid4().hex
    try:
        intent = websocket.query_params.get("intent", "transcription")
        if intent != "transcription":
            raise _invalid(
                f"intent {intent!r} is not served: this endpoint transcribes (?intent=transcription)",
                "intent",
            )
        authorization = check_authorization(_authorization_header(websocket, offered), settings)
        metadata = [(REQUEST_ID_KEY, request_id)]
        if authorization:
            metadata.append(("authorization", authorization))
        session = RealtimeSession(socket, client, settings, metadata)
    except GatewayError as error:
        log.info("realtime session %s refused: %s", request_id, error.message)
        with contextlib.suppress(Exception):
            await socket.fail(error)
        return
    with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):  # the client went away meanwhile
        await session.run()
