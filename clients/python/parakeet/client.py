"""Typed Python client of the parakeet-grpc services: a thin layer over the generated stubs.

In the spirit of NVIDIA riva's `riva.client.asr`: small functions build the request messages
(`audio_message`, `orchestrate_request`, ...), and two clients, `ParakeetClient` (blocking) and
`AsyncParakeetClient` (asyncio, `grpc.aio`), send them and hand back the response messages
untouched. What the wrapper adds is only what every caller would otherwise rewrite: audio from a
path, URL or bytes; response formats by their short names ("srt", checked against
`parakeet.formats`, the one table of formats); a bearer token and default
deadline on every call; and `ParakeetError` subclasses (`parakeet.errors`, with the server's
machine-readable `reason` and whether the call is `retryable`) instead of raw `grpc.RpcError`s.

    with ParakeetClient("127.0.0.1:50053") as client:
        result = client.transcribe("call.wav", diarize=True, response_format="srt")
        print(result.document)

Live streams (`stream`) send a `streaming_config` and then audio from a `parakeet.streaming`
source on a sender thread (an asyncio task for the async client), yielding the server's
interim and final results as they arrive:

    with ParakeetClient("127.0.0.1:50053") as client:
        for response in client.stream("call.wav", diarize=True, realtime=True):
            if response.HasField("final_result"):
                print(response.final_result.speaker, response.final_result.text)
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack, overload

import grpc
import grpc.aio
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parakeet import formats
from parakeet.aio_status import StatusKeeper
from parakeet.errors import ParakeetError
from parakeet.formats import FormatLike
from parakeet.streaming import StreamAudio, aiterate, apaced, open_audio, paced, require_pacing
from parakeet.v1 import (
    audio_pb2,
    diarization_pb2,
    diarization_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    streaming_pb2,
    transcription_pb2,
    transcription_pb2_grpc,
)

# Where the audio comes from: a local file, an http(s) URL the service downloads, the encoded
# file's bytes, or a ready `Audio` message.
AudioSource = str | os.PathLike[str] | bytes | bytearray | memoryview | audio_pb2.Audio

# The servers accept 64 MiB messages by default; gRPC's own 4 MiB default would refuse a long WAV.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_URL_SCHEMES = ("http://", "https://")


# -- request builders --------------------------------------------------------------------------


def is_url(source: object) -> bool:
    """True for an http:// or https:// URL string, which the service downloads itself."""
    return isinstance(source, str) and source.strip().lower().startswith(_URL_SCHEMES)


def audio_message(source: AudioSource, format: str = "") -> audio_pb2.Audio:
    """The `Audio` message for a file path, an http(s) URL, the file's bytes, or an `Audio`.

    A path is read here and sent as bytes (the server never sees the client's disk), with the
    file's suffix as the format hint unless `format` is given. A URL is sent as is: the
    service downloads it, so it must be reachable from the server, not just from here.
    """
    if isinstance(source, audio_pb2.Audio):
        audio = audio_pb2.Audio()
        audio.CopyFrom(source)
        if format:
            audio.format = format
        return audio
    if isinstance(source, bytes | bytearray | memoryview):
        return audio_pb2.Audio(content=bytes(source), format=format)
    if isinstance(source, str) and is_url(source):
        return audio_pb2.Audio(uri=source.strip(), format=format)
    path = Path(source)
    return audio_pb2.Audio(content=path.read_bytes(), format=format or path.suffix.lstrip(".").lower())


HotwordLike = str | tuple[str, float] | audio_pb2.Hotword
"""A phrase to boost: "Kubernetes", "Kubernetes:3" (phrase:boost), ("Kubernetes", 3.0) or a Hotword."""


def parse_hotword(text: str) -> audio_pb2.Hotword:
    """`PHRASE[:BOOST]` (the CLI's --hotword): a trailing `:number` is the boost, else all is the phrase."""
    phrase, colon, boost = text.rpartition(":")
    if colon:
        try:
            return audio_pb2.Hotword(phrase=phrase, boost=float(boost))
        except ValueError:
            pass
    return audio_pb2.Hotword(phrase=text)


def hotword_messages(hotwords: Sequence[HotwordLike]) -> list[audio_pb2.Hotword]:
    """Hotword messages for the request builders; the server validates them (limits: audio.proto)."""
    messages = []
    for hotword in hotwords:
        if isinstance(hotword, audio_pb2.Hotword):
            messages.append(hotword)
        elif isinstance(hotword, str):
            messages.append(parse_hotword(hotword))
        else:
            phrase, boost = hotword
            messages.append(audio_pb2.Hotword(phrase=phrase, boost=boost))
    return messages


VOICEPRINT_SUFFIX = ".voiceprint.json"
# A known speaker: a KnownSpeaker message, a `*.voiceprint.json` file (see `write_voiceprint`), or
# (name, voiceprint) or (name, reference audio of that speaker alone, enrolled by the server).
KnownSpeakerLike = (
    audio_pb2.KnownSpeaker | str | os.PathLike[str] | tuple[str, audio_pb2.Voiceprint | AudioSource]
)


def write_voiceprint(path: str | os.PathLike[str], enrolled: diarization_pb2.EnrollResponse) -> Path:
    """Save an Enroll answer as a `*.voiceprint.json` file: a KnownSpeaker in protobuf JSON
    (name and voiceprint), which `read_voiceprint` and `--speaker` read back."""
    target = Path(path)
    speaker = audio_pb2.KnownSpeaker(name=enrolled.name, voiceprint=enrolled.voiceprint)
    target.write_text(json_format.MessageToJson(speaker) + "\n", encoding="utf-8")
    return target


def read_voiceprint(path: str | os.PathLike[str]) -> audio_pb2.KnownSpeaker:
    """A `*.voiceprint.json` file as a KnownSpeaker; ValueError saying what is wrong with it."""
    source = Path(path)
    try:
        speaker = json_format.Parse(source.read_text(encoding="utf-8"), audio_pb2.KnownSpeaker())
    except OSError as error:
        raise ValueError(f"cannot read the voiceprint file {source}: {error.strerror or error}") from None
    except json_format.ParseError as error:
        raise ValueError(f"{source} is not a voiceprint file (made by `parakeet enroll`): {error}") from None
    if speaker.WhichOneof("voice") != "voiceprint" or not speaker.voiceprint.embedding:
        raise ValueError(f"{source} holds no voiceprint embedding; make it with `parakeet enroll`")
    if not speaker.name:
        raise ValueError(f"{source} has no name; enrol with --name NAME")
    return speaker


def known_speaker_messages(known: Sequence[KnownSpeakerLike]) -> list[audio_pb2.KnownSpeaker]:
    """KnownSpeaker messages for the request builders; the server checks names and voiceprints."""
    messages = []
    for speaker in known:
        if isinstance(speaker, audio_pb2.KnownSpeaker):
            messages.append(speaker)
        elif isinstance(speaker, tuple):
            name, voice = speaker
            if isinstance(voice, audio_pb2.Voiceprint):
                messages.append(audio_pb2.KnownSpeaker(name=name, voiceprint=voice))
            else:
                messages.append(audio_pb2.KnownSpeaker(name=name, reference=audio_message(voice)))
        else:
            messages.append(read_voiceprint(speaker))
    return messages


def enroll_request(audio: AudioSource, *, name: str = "") -> diarization_pb2.EnrollRequest:
    """An EnrollRequest: audio of one speaker alone (2-30 s of speech; 10-20 s works best)."""
    return diarization_pb2.EnrollRequest(audio=audio_message(audio), name=name)


def orchestrate_request(
    audio: AudioSource,
    *,
    diarize: bool = False,
    response_format: FormatLike = "json",
    language: str = "",
    word_timestamps: bool = False,
    timestamps: bool = True,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    speakers_optional: bool = False,
    hotwords: Sequence[HotwordLike] = (),
    known_speakers: Sequence[KnownSpeakerLike] = (),
    speaker_match_threshold: float | None = None,
    multichannel: bool = False,
) -> orchestrator_pb2.OrchestrateRequest:
    """An OrchestrateRequest; optional fields left at their defaults stay unset on the wire.

    `timestamps=False` leaves segment timings out; `speakers_optional=True` returns the transcript
    without speakers (and a warning) when diarization fails, instead of failing the call;
    `hotwords` are phrases the decoder should favour (see HotwordLike); `multichannel` transcribes
    each channel on its own (speakers CHANNEL_n, or found within each channel with `diarize`)."""
    return orchestrator_pb2.OrchestrateRequest(
        audio=audio_message(audio),
        diarize=diarize,
        response_format=formats.parse(
            response_format, formats.Rpc.ORCHESTRATE, speakers=diarize or multichannel
        ),
        language=language,
        word_timestamps=word_timestamps or None,
        timestamps=None if timestamps else False,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        speakers_optional=speakers_optional,
        hotwords=hotword_messages(hotwords),
        known_speakers=known_speaker_messages(known_speakers),
        speaker_match_threshold=speaker_match_threshold,
        multichannel=multichannel,
    )


def transcribe_request(
    audio: AudioSource,
    *,
    response_format: FormatLike = "json",
    language: str = "",
    word_timestamps: bool = False,
    timestamps: bool = True,
    diarization_segments: Sequence[audio_pb2.SpeakerTurn] = (),
    hotwords: Sequence[HotwordLike] = (),
    multichannel: bool = False,
) -> transcription_pb2.TranscribeRequest:
    """A TranscribeRequest; pass a DiarizeResponse's `segments` as `diarization_segments`;
    `multichannel` transcribes each channel on its own (words carry their channel)."""
    return transcription_pb2.TranscribeRequest(
        audio=audio_message(audio),
        response_format=formats.parse(response_format, formats.Rpc.TRANSCRIBE),
        language=language,
        word_timestamps=word_timestamps or None,
        timestamps=None if timestamps else False,
        diarization_segments=list(diarization_segments),
        hotwords=hotword_messages(hotwords),
        multichannel=multichannel,
    )


def diarize_request(
    audio: AudioSource,
    *,
    response_format: FormatLike = "json",
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    exclusive: bool = False,
    known_speakers: Sequence[KnownSpeakerLike] = (),
    speaker_match_threshold: float | None = None,
) -> diarization_pb2.DiarizeRequest:
    """A DiarizeRequest; `exclusive=True` gives the non-overlapping turns word alignment wants."""
    return diarization_pb2.DiarizeRequest(
        audio=audio_message(audio),
        response_format=formats.parse(response_format, formats.Rpc.DIARIZE),
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        exclusive=exclusive,
        known_speakers=known_speaker_messages(known_speakers),
        speaker_match_threshold=speaker_match_threshold,
    )


def streaming_config(
    audio_format: streaming_pb2.StreamingAudioFormat | None = None,
    *,
    diarize: bool = False,
    interim_results: bool = True,
    word_timestamps: bool = True,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    endpoint_silence_ms: int = 0,
    language: str = "",
    speakers_optional: bool = False,
    hotwords: Sequence[HotwordLike] = (),
    known_speakers: Sequence[KnownSpeakerLike] = (),
    speaker_match_threshold: float | None = None,
) -> streaming_pb2.StreamingConfig:
    """The first message of every live stream (all three Streaming* RPCs, and the CLI's
    embedded mode); options left at their defaults stay unset on the wire.

    `endpoint_silence_ms` is the silence that ends an utterance (0: the server's default);
    `speakers_optional=True` keeps transcribing without speakers if live diarization fails."""
    return streaming_pb2.StreamingConfig(
        audio_format=audio_format,
        diarize=diarize,
        interim_results=None if interim_results else False,
        word_timestamps=None if word_timestamps else False,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        endpoint_silence_ms=endpoint_silence_ms,
        language=language,
        speakers_optional=speakers_optional,
        hotwords=hotword_messages(hotwords),
        known_speakers=known_speaker_messages(known_speakers),
        speaker_match_threshold=speaker_match_threshold,
    )


# -- clients -----------------------------------------------------------------------------------


def _channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


class OrchestrateOptions(TypedDict, total=False):
    """The keywords of `orchestrate_request`, which the clients' `transcribe` passes on."""

    diarize: bool
    response_format: FormatLike
    language: str
    word_timestamps: bool
    timestamps: bool
    num_speakers: int | None
    min_speakers: int | None
    max_speakers: int | None
    speakers_optional: bool
    hotwords: Sequence[HotwordLike]
    known_speakers: Sequence[KnownSpeakerLike]
    speaker_match_threshold: float | None
    multichannel: bool


class TranscribeOptions(TypedDict, total=False):
    """The keywords of `transcribe_request`, which the clients' `transcribe_only` passes on."""

    response_format: FormatLike
    language: str
    word_timestamps: bool
    timestamps: bool
    diarization_segments: Sequence[audio_pb2.SpeakerTurn]
    hotwords: Sequence[HotwordLike]
    multichannel: bool


class DiarizeOptions(TypedDict, total=False):
    """The keywords of `diarize_request`, which the clients' `diarize` passes on."""

    response_format: FormatLike
    num_speakers: int | None
    min_speakers: int | None
    max_speakers: int | None
    exclusive: bool
    known_speakers: Sequence[KnownSpeakerLike]
    speaker_match_threshold: float | None


class StreamOptions(TypedDict, total=False):
    """The keywords of `streaming_config`, which the clients' `stream` passes on."""

    diarize: bool
    interim_results: bool
    word_timestamps: bool
    num_speakers: int | None
    min_speakers: int | None
    max_speakers: int | None
    endpoint_silence_ms: int
    language: str
    speakers_optional: bool
    hotwords: Sequence[HotwordLike]
    known_speakers: Sequence[KnownSpeakerLike]
    speaker_match_threshold: float | None


# Which Streaming* RPC `stream` calls: OrchestratorService (words with speakers when diarizing),
# TranscriptionService (words only) or DiarizationService (speaker turns only).
StreamRpc = Literal["orchestrate", "transcribe", "diarize"]
_STREAM_REQUESTS: dict[str, Callable[..., Any]] = {
    "orchestrate": orchestrator_pb2.StreamingOrchestrateRequest,
    "transcribe": transcription_pb2.StreamingTranscribeRequest,
    "diarize": diarization_pb2.StreamingDiarizeRequest,
}


class _Stream:
    """What one live stream needs before its call starts: the audio, its config, the RPC's
    request type, and the byte rate to pace at (0: as fast as the call takes them)."""

    def __init__(self, rpc: str, audio: StreamAudio, realtime: bool, options: StreamOptions) -> None:
        if rpc not in _STREAM_REQUESTS:
            raise ValueError(f"rpc must be one of {', '.join(_STREAM_REQUESTS)}, got {rpc!r}")
        self.rpc = rpc
        self.request = _STREAM_REQUESTS[rpc]
        self.audio = open_audio(audio)
        self.rate = require_pacing(self.audio) if realtime else 0.0
        self.config = streaming_config(self.audio.format, **options)
        # The source's own failure (a read error): raised to the caller instead of the
        # CANCELLED status it turns into on the wire.
        self.error: BaseException | None = None


class _Sender:
    """The blocking client's request iterator, which grpc drains on its own thread: the config,
    then the audio (paced when asked); stops at `stop`, and on a source error records it and
    cancels the call."""

    def __init__(self, stream: _Stream) -> None:
        if not isinstance(stream.audio.chunks, Iterable):
            raise TypeError("the blocking client streams sync iterables of bytes; use AsyncParakeetClient")
        self.stream = stream
        self.chunks: Iterable[bytes] = stream.audio.chunks
        self.stop = threading.Event()
        self.call: grpc.Future | None = None
        self.call_known = threading.Event()  # `call` is set: a source error can cancel it

    def requests(self) -> Generator[Any, None, None]:
        yield self.stream.request(config=self.stream.config)
        chunks = paced(self.chunks, self.stream.rate, self.stop) if self.stream.rate else self.chunks
        try:
            for chunk in chunks:
                if self.stop.is_set():
                    return
                if chunk:
                    yield self.stream.request(audio=bytes(chunk))
        except Exception as error:
            self.stream.error = error
            self.call_known.wait()
            if self.call is not None:
                self.call.cancel()


class _BaseClient:
    """What both clients share: the stubs over one channel, a default deadline and the token."""

    def __init__(
        self, address: str, channel: grpc.Channel | grpc.aio.Channel, timeout: float | None, token: str | None
    ) -> None:
        self.address = address
        self._timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        self._transcription = transcription_pb2_grpc.TranscriptionServiceStub(channel)
        self._diarization = diarization_pb2_grpc.DiarizationServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    def _call_options(self, timeout: float | None) -> dict[str, Any]:
        return {"timeout": self._timeout if timeout is None else timeout, "metadata": self._metadata}

    def _stream_method(self, rpc: str) -> Callable[..., Any]:
        method: Callable[..., Any] = {
            "orchestrate": self._orchestrator.StreamingOrchestrate,
            "transcribe": self._transcription.StreamingTranscribe,
            "diarize": self._diarization.StreamingDiarize,
        }[rpc]
        return method


class ParakeetClient(_BaseClient):
    """Blocking client of one server: `transcribe` (OrchestratorService), `transcribe_only`
    (TranscriptionService), `diarize` (DiarizationService) and `health`.

    One channel for the client's life; use it as a context manager or call `close()`.
    `timeout` is the default deadline of every call in seconds (None: no deadline); `token`
    sends `authorization: Bearer <token>`; `credentials` switches to TLS. The keywords of each
    method are those of its request builder (`orchestrate_request`, ...).
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = None,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        options = _channel_options(max_message_bytes)
        self._channel: grpc.Channel = (
            grpc.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(address, options=options)
        )
        super().__init__(address, self._channel, timeout, token)

    def _call(self, method: Callable[..., Any], request: Any, timeout: float | None) -> Any:
        try:
            return method(request, **self._call_options(timeout))
        except grpc.RpcError as error:
            raise ParakeetError.from_rpc_error(error) from None

    def transcribe(
        self, audio: AudioSource, *, timeout: float | None = None, **options: Unpack[OrchestrateOptions]
    ) -> orchestrator_pb2.OrchestrateResponse:
        """Transcript of `audio`, every word with a speaker when `diarize` (OrchestratorService)."""
        return self.orchestrate(orchestrate_request(audio, **options), timeout=timeout)

    def orchestrate(
        self, request: orchestrator_pb2.OrchestrateRequest, *, timeout: float | None = None
    ) -> orchestrator_pb2.OrchestrateResponse:
        """Send a request built elsewhere (e.g. `orchestrate_request`, or read from a manifest)."""
        response: orchestrator_pb2.OrchestrateResponse = self._call(
            self._orchestrator.Orchestrate, request, timeout
        )
        return response

    def transcribe_only(
        self, audio: AudioSource, *, timeout: float | None = None, **options: Unpack[TranscribeOptions]
    ) -> transcription_pb2.TranscribeResponse:
        """TranscriptionService alone (the split architecture); speakers from `diarization_segments`."""
        response: transcription_pb2.TranscribeResponse = self._call(
            self._transcription.Transcribe, transcribe_request(audio, **options), timeout
        )
        return response

    def diarize(
        self, audio: AudioSource, *, timeout: float | None = None, **options: Unpack[DiarizeOptions]
    ) -> diarization_pb2.DiarizeResponse:
        """Speaker turns of `audio` from DiarizationService (json, or rttm in `document`)."""
        response: diarization_pb2.DiarizeResponse = self._call(
            self._diarization.Diarize, diarize_request(audio, **options), timeout
        )
        return response

    def enroll(
        self, audio: AudioSource, *, name: str = "", timeout: float | None = None
    ) -> diarization_pb2.EnrollResponse:
        """A voiceprint of the one speaker in `audio` (DiarizationService.Enroll); save it with
        `write_voiceprint` and pass it back in `known_speakers`."""
        response: diarization_pb2.EnrollResponse = self._call(
            self._diarization.Enroll, enroll_request(audio, name=name), timeout
        )
        return response

    @overload
    def stream(
        self,
        audio: StreamAudio,
        *,
        rpc: Literal["orchestrate"] = ...,
        realtime: bool = ...,
        timeout: float | None = ...,
        **options: Unpack[StreamOptions],
    ) -> Generator[orchestrator_pb2.StreamingOrchestrateResponse, None, None]: ...
    @overload
    def stream(
        self,
        audio: StreamAudio,
        *,
        rpc: Literal["transcribe"],
        realtime: bool = ...,
        timeout: float | None = ...,
        **options: Unpack[StreamOptions],
    ) -> Generator[transcription_pb2.StreamingTranscribeResponse, None, None]: ...
    @overload
    def stream(
        self,
        audio: StreamAudio,
        *,
        rpc: Literal["diarize"],
        realtime: bool = ...,
        timeout: float | None = ...,
        **options: Unpack[StreamOptions],
    ) -> Generator[diarization_pb2.StreamingDiarizeResponse, None, None]: ...
    def stream(
        self,
        audio: StreamAudio,
        *,
        rpc: StreamRpc = "orchestrate",
        realtime: bool = False,
        timeout: float | None = None,
        **options: Unpack[StreamOptions],
    ) -> Generator[Any, None, None]:
        """A live stream of `audio` (see `parakeet.streaming.open_audio`) to the `rpc`'s
        Streaming* method: yields its responses as they arrive while a sender thread sends the
        config and then the audio, at the audio's own pace when `realtime` (raw PCM and 16-bit
        WAV only: ValueError otherwise).

        The call starts on the first `next()`; leaving the loop early, or `close()` on the
        returned generator, cancels it. A failed call raises `ParakeetError` (with the last
        finals already yielded); a failing audio source raises its own error. `timeout` bounds
        the whole stream."""
        return self._stream(_Sender(_Stream(rpc, audio, realtime, options)), timeout)

    def _stream(self, sender: _Sender, timeout: float | None) -> Generator[Any, None, None]:
        stream = sender.stream
        try:
            call = self._stream_method(stream.rpc)(sender.requests(), **self._call_options(timeout))
            sender.call = call
        finally:
            sender.call_known.set()
        try:
            yield from call
        except grpc.RpcError as error:
            if stream.error is not None:
                raise stream.error from None
            raise ParakeetError.from_rpc_error(error) from None
        finally:
            sender.stop.set()
            call.cancel()

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """ "SERVING", "NOT_SERVING", ... for `service` (a full name; "" is the whole server).

        A service the server does not host raises `ParakeetError` with code NOT_FOUND.
        """
        reply = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return _status_name(reply.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ParakeetClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncParakeetClient(_BaseClient):
    """The asyncio twin of `ParakeetClient` (grpc.aio): the same methods, awaited.

    Create it inside the running event loop; use `async with` or `await client.close()`.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = None,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        options = _channel_options(max_message_bytes)
        self._channel: grpc.aio.Channel = (
            grpc.aio.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(address, options=options)
        )
        super().__init__(address, self._channel, timeout, token)

    async def _call(self, method: Callable[..., Any], request: Any, timeout: float | None) -> Any:
        try:
            return await method(request, **self._call_options(timeout))
        except grpc.RpcError as error:
            raise ParakeetError.from_rpc_error(error) from None

    async def transcribe(
        self, audio: AudioSource, *, timeout: float | None = None, **options: Unpack[OrchestrateOptions]
    ) -> orchestrator_pb2.OrchestrateResponse:
        """Transcript of `audio`, every word with a speaker when `diarize` (OrchestratorService)."""
        return await self.orchestrate(orchestrate_request(audio, **options), timeout=timeout)

    async def orchestrate(
        self, request: orchestrator_pb2.OrchestrateRequest, *, timeout: float | None = None
    ) -> orchestrator_pb2.OrchestrateResponse:
        """Send a request built elsewhere (e.g. `orchestrate_request`, or read from a manifest)."""
        response: orchestrator_pb2.OrchestrateResponse = await self._call(
            self._orchestrator.Orchestrate, request, timeout
        )
        return response

    async def transcribe_only(
        self, audio: AudioSource, *, timeout: float | None = None, **options: Unpack[TranscribeOptions]
    ) -> transcription_pb2.TranscribeResponse:
        """TranscriptionService alone (the split architecture); speakers from `diarization_segments`."""
        response: transcription_pb2.TranscribeResponse = await self._call(
            self._transcription.Transcribe, transcribe_request(audio, **options), timeout
        )
        return response

    async def diarize(
        self, audio: AudioSource, *, timeout: float | None = None, **options: Unpack[DiarizeOptions]
    ) -> diarization_pb2.DiarizeResponse:
        """Speaker turns of `audio` from DiarizationService (json, or rttm in `document`)."""
        response: diarization_pb2.DiarizeResponse = await self._call(
            self._diarization.Diarize, diarize_request(audio, **options), timeout
        )
        return response

    async def enroll(
        self, audio: AudioSource, *, name: str = "", timeout: float | None = None
    ) -> diarization_pb2.EnrollResponse:
        """A voiceprint of the one speaker in `audio` (DiarizationService.Enroll)."""
        response: diarization_pb2.EnrollResponse = await self._call(
            self._diarization.Enroll, enroll_request(audio, name=name), timeout
        )
        return response

    @overload
    def stream(
        self,
        audio: StreamAudio,
        *,
        rpc: Literal["orchestrate"] = ...,
        realtime: bool = ...,
        timeout: float | None = ...,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[orchestrator_pb2.StreamingOrchestrateResponse, None]: ...
    @overload
    def stream(
        self,
        audio: StreamAudio,
        *,
        rpc: Literal["transcribe"],
        realtime: bool = ...,
        timeout: float | None = ...,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[transcription_pb2.StreamingTranscribeResponse, None]: ...
    @overload
    def stream(
        self,
        audio: StreamAudio,
        *,
        rpc: Literal["diarize"],
        realtime: bool = ...,
        timeout: float | None = ...,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[diarization_pb2.StreamingDiarizeResponse, None]: ...
    def stream(
        self,
        audio: StreamAudio,
        *,
        rpc: StreamRpc = "orchestrate",
        realtime: bool = False,
        timeout: float | None = None,
        **options: Unpack[StreamOptions],
    ) -> AsyncGenerator[Any, None]:
        """`ParakeetClient.stream` for asyncio: `async for` over the responses while a task
        sends the audio (async or sync iterables; sync ones are read in a worker thread).
        Leaving the loop cancels the call once the generator is closed (`aclose()`, or
        `contextlib.aclosing` to make it immediate)."""
        return self._stream(_Stream(rpc, audio, realtime, options), timeout)

    async def _stream(self, stream: _Stream, timeout: float | None) -> AsyncGenerator[Any, None]:
        call: Any = None

        async def requests() -> AsyncGenerator[Any, None]:
            yield stream.request(config=stream.config)
            chunks = aiterate(stream.audio.chunks)
            try:
                async for chunk in apaced(chunks, stream.rate) if stream.rate else chunks:
                    if chunk:
                        yield stream.request(audio=bytes(chunk))
            except Exception as error:
                stream.error = error
                call.cancel()

        call = self._stream_method(stream.rpc)(requests(), **self._call_options(timeout))
        statuses = StatusKeeper(call)  # grpcio may hide the server's refusal (aio_status)
        try:
            async for response in call:
                yield response
        except (grpc.RpcError, asyncio.CancelledError) as error:
            if stream.error is not None:
                raise stream.error from None
            if isinstance(error, grpc.RpcError):
                raise ParakeetError.from_rpc_error(statuses.server_error(error)) from None
            raise
        finally:
            call.cancel()

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """ "SERVING", "NOT_SERVING", ... for `service` (a full name; "" is the whole server)."""
        reply = await self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return _status_name(reply.status)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncParakeetClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


def _status_name(status: int) -> str:
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return name
