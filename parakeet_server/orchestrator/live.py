"""StreamingOrchestrate: one live stream fanned out to transcription and diarization, merged as
finals arrive.

The orchestrator decodes the client's audio once (core/live.py) and feeds the same 16 kHz samples
to a transcription stream and, when diarizing, a diarization stream: in process (the servicers'
own sessions) or over the two services' Streaming* RPCs (`GrpcStreamSession`, which sends 16 kHz
f32le PCM, so nothing is decoded twice). Both answer with their proto responses, so the merge
below does not know where they run.

Merge rules: interim results and SPEECH_STARTED go out at once (they carry no speaker). A final
result waits until diarization has decided its span (the diarization stream's
`processed_seconds` reaches the final's end), then goes out with a speaker on every word (the
shared merge rules of core/merge.py), split into one final per run of one speaker's words (an
utterance may span a change of speaker), followed by its END_OF_UTTERANCE: so finals are never
revised. When both streams have ended the summary goes
out. A failing diarization fails the stream, or with `speakers_optional` turns into a warning and
the rest of the finals go out without speakers.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc
import numpy as np

from parakeet.v1 import (
    audio_pb2,
    diarization_pb2,
    orchestrator_pb2,
    streaming_pb2,
    transcription_pb2,
)
from parakeet_server.core.errors import (
    InvalidRequest,
    LimitExceeded,
    PreconditionFailed,
    ServiceError,
)
from parakeet_server.core.live import LiveOutput, LiveSession, Opener, Samples
from parakeet_server.core.logs import REQUEST_ID_KEY, current_request_id
from parakeet_server.core.merge import assign_speakers, speaker_runs

log = logging.getLogger(__name__)

Response = orchestrator_pb2.StreamingOrchestrateResponse
AsrResponse = transcription_pb2.StreamingTranscribeResponse
DiarResponse = diarization_pb2.StreamingDiarizeResponse
# The backends' streams take what the orchestrator decoded: 16 kHz mono float32, unchanged.
BACKEND_AUDIO = streaming_pb2.StreamingAudioFormat(
    encoding=streaming_pb2.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=16_000, channels=1
)
# Audio messages queued for a gRPC backend before `feed` waits (about 10 s at 100 ms messages).
_BACKEND_QUEUE = 100


class StreamingBackends(Protocol):
    """Backends that can open live streams (in process or gRPC; RunPod cannot)."""

    def open_transcription_stream(
        self, config: streaming_pb2.StreamingConfig, output: LiveOutput[AsrResponse]
    ) -> LiveSession: ...

    def open_diarization_stream(
        self, config: streaming_pb2.StreamingConfig, output: LiveOutput[DiarResponse]
    ) -> LiveSession: ...


# What only diarization is asked (the transcription stream gets the rest).
_SPEAKER_FIELDS = (
    "diarize",
    "num_speakers",
    "min_speakers",
    "max_speakers",
    "speakers_optional",
    "known_speakers",
    "speaker_match_threshold",
)


def backend_configs(
    config: streaming_pb2.StreamingConfig,
) -> tuple[streaming_pb2.StreamingConfig, streaming_pb2.StreamingConfig]:
    """What each backend is asked: transcription without speakers, diarization without text
    options (known speakers go to diarization only); both fed 16 kHz f32le."""
    asr = streaming_pb2.StreamingConfig()
    asr.CopyFrom(config)
    asr.audio_format.CopyFrom(BACKEND_AUDIO)
    for name in _SPEAKER_FIELDS:
        asr.ClearField(name)
    diar = streaming_pb2.StreamingConfig(
        audio_format=BACKEND_AUDIO,
        diarize=True,
        language=config.language,
        known_speakers=config.known_speakers,
    )
    for name in ("num_speakers", "min_speakers", "max_speakers", "speaker_match_threshold"):
        if config.HasField(name):
            setattr(diar, name, getattr(config, name))
    return asr, diar


class _Relay(LiveOutput[Any]):
    """A backend stream's output, handed straight to the merge (no queue between them)."""

    def __init__(self, on_send: Callable[[Any], None], on_end: Callable[[ServiceError | None], None]) -> None:
        super().__init__()
        self._on_send = on_send
        self._on_end = on_end

    def send(self, response: Any) -> None:
        self._on_send(response)

    def end(self, error: ServiceError | None = None) -> None:
        self._on_end(error)


class OrchestratedSession:
    """One StreamingOrchestrate stream: the two backend streams and the merge of their results."""

    def __init__(
        self,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[Response],
        backends: StreamingBackends,
    ) -> None:
        if (config.known_speakers or config.HasField("speaker_match_threshold")) and not config.diarize:
            raise InvalidRequest(
                "known_speakers names the speakers diarization finds: set diarize=true with them",
                reason="INVALID_FIELD",
            )
        self.output = output
        self.diarize = config.diarize
        self.speakers_optional = config.speakers_optional
        self.word_timestamps = not config.HasField("word_timestamps") or config.word_timestamps
        self._lock = threading.Lock()
        self._held: collections.deque[AsrResponse] = collections.deque()  # finals and their events
        self._turns: list[audio_pb2.SpeakerTurn] = []
        self._decided = 0.0  # diarization's processed_seconds
        self._processed = 0.0  # transcription's processed_seconds
        self._asr_summary: streaming_pb2.StreamingSummary | None = None
        self._diar_summary: streaming_pb2.StreamingSummary | None = None
        self._diar_running = self.diarize
        self._warnings: list[str] = []
        self._speakers: list[str] = []
        self._finals = 0
        self._over = False
        asr_config, diar_config = backend_configs(config)
        # With word_timestamps off the merge still needs word times: ask for them, drop them here.
        asr_config.word_timestamps = True
        self._asr = backends.open_transcription_stream(asr_config, _Relay(self._from_asr, self._asr_ended))
        self._diar: LiveSession | None = None
        if self.diarize:
            try:
                self._diar = backends.open_diarization_stream(
                    diar_config, _Relay(self._from_diarization, self._diarization_ended)
                )
            except BaseException:
                self._asr.cancel()
                raise

    # Audio in --------------------------------------------------------------------------------

    def feed(self, samples: Samples) -> None:
        self._asr.feed(samples)
        diar = self._diar
        if diar is not None and self._diar_running:
            diar.feed(samples)

    def finish(self) -> None:
        diar = self._diar
        if diar is not None and self._diar_running:
            threading.Thread(target=diar.finish, name="orchestrate-finish", daemon=True).start()
        self._asr.finish()

    def cancel(self) -> None:
        with self._lock:
            self._over = True
        self._asr.cancel()
        if self._diar is not None:
            self._diar.cancel()

    # Results in ------------------------------------------------------------------------------

    def _from_asr(self, response: AsrResponse) -> None:
        with self._lock:
            if self._over:
                return
            self._processed = max(self._processed, response.processed_seconds)
            event = response.WhichOneof("event")
            if event == "summary":
                self._asr_summary = response.summary
            elif event == "final_result" or (
                event == "speech_event"
                and response.speech_event.type == streaming_pb2.SPEECH_EVENT_TYPE_END_OF_UTTERANCE
            ):
                self._held.append(response)
            else:  # interim, SPEECH_STARTED or progress: nothing to wait for
                self.output.send(self._relayed(response))
            self._release()

    def _from_diarization(self, response: DiarResponse) -> None:
        with self._lock:
            if self._over:
                return
            self._decided = max(self._decided, response.processed_seconds)
            event = response.WhichOneof("event")
            if event == "turn":
                self._turns.append(response.turn)
            elif event == "summary":
                self._diar_summary = response.summary
            self._release()

    def _asr_ended(self, error: ServiceError | None) -> None:
        if error is not None:
            self._fail(error)
            return
        with self._lock:
            if self._asr_summary is None:
                self._asr_summary = streaming_pb2.StreamingSummary(duration=self._processed)
            self._release()

    def _diarization_ended(self, error: ServiceError | None) -> None:
        if error is None:
            with self._lock:
                self._diar_running = False
                self._release()
            return
        if not self.speakers_optional or isinstance(error, InvalidRequest | LimitExceeded) or _refused(error):
            self._fail(error)
            return
        log.warning("live diarization failed, going on without speakers: %s", error.message)
        with self._lock:
            self._diar_running = False
            self._warnings.append(
                f"speakers are missing from {self._decided:g} s on: live diarization failed "
                f"({error.code.name}: {error.message})"
            )
            self._release()

    def _fail(self, error: ServiceError) -> None:
        with self._lock:
            if self._over:
                return
            self._over = True
        self._asr.cancel()
        if self._diar is not None:
            self._diar.cancel()
        self.output.end(error)

    # Merge -----------------------------------------------------------------------------------

    def _release(self) -> None:
        """Send the held finals whose speakers are decided; the summary once both streams ended.
        Called with the lock held."""
        while self._held:
            head = self._held[0]
            waiting = self.diarize and self._diar_running and head.final_result.end > self._decided
            if head.WhichOneof("event") == "final_result" and waiting:
                break
            self._held.popleft()
            if head.WhichOneof("event") == "final_result":
                for response in self._finals_of(head.final_result):
                    self.output.send(response)
            else:
                self.output.send(self._relayed(head))
        if self._asr_summary is not None and not self._diar_running and not self._held and not self._over:
            self._over = True
            self.output.send(Response(summary=self._summary(), processed_seconds=self._processed))
            self.output.end()

    def _relayed(self, response: AsrResponse) -> Response:
        """An interim or speech event as the orchestrator's response."""
        relayed = Response(processed_seconds=self._processed)
        event = response.WhichOneof("event")
        if event == "interim":
            relayed.interim.CopyFrom(response.interim)
        elif event == "speech_event":
            relayed.speech_event.CopyFrom(response.speech_event)
        return relayed

    def _finals_of(self, final: streaming_pb2.FinalResult) -> list[Response]:
        """A transcription final as the orchestrator's finals: one per run of one speaker's words
        when diarizing (an utterance can span a change of speaker: the endpoint waits for a
        silence, speakers take turns without one), each with its words' speaker."""
        words = list(final.words)
        if self.diarize and self._turns and words:
            words = assign_speakers(words, self._turns)
        runs = speaker_runs(words)
        if len(runs) <= 1:
            runs = [words]
        responses = []
        for run in runs:
            piece = streaming_pb2.FinalResult(
                text=" ".join(w.word for w in run) if len(runs) > 1 else final.text,
                words=run if self.word_timestamps else [],
                start=run[0].start if run else final.start,
                end=run[-1].end if run else final.end,
                speaker=run[0].speaker if run else "",
                utterance_index=self._finals,
            )
            self._finals += 1
            if piece.speaker and piece.speaker not in self._speakers:
                self._speakers.append(piece.speaker)
            responses.append(Response(final_result=piece, processed_seconds=self._processed))
        return responses

    def _summary(self) -> streaming_pb2.StreamingSummary:
        asr = self._asr_summary or streaming_pb2.StreamingSummary()
        models = [asr.model] + ([self._diar_summary.model] if self._diar_summary is not None else [])
        speakers = list(self._speakers)
        if self._diar_summary is not None:
            speakers += [s for s in self._diar_summary.speakers if s not in speakers]
        return streaming_pb2.StreamingSummary(
            duration=asr.duration,
            num_speakers=len(speakers),
            speakers=speakers,
            model=" + ".join(m for m in models if m),
            speaker_identities=self._diar_summary.speaker_identities if self._diar_summary else [],
            warnings=[
                *asr.warnings,
                *(self._diar_summary.warnings if self._diar_summary else []),
                *self._warnings,
            ],
            num_finals=self._finals,
        )


def _refused(error: ServiceError) -> bool:
    """A diarization error about the request itself (a known speaker's voiceprint made by another
    model): going on without speakers would hide it, so it fails the stream even with
    speakers_optional."""
    return error.reason == "VOICEPRINT_MISMATCH"


def open_orchestrated(backends: Any) -> Opener[Response]:
    """The StreamingOrchestrate opener over `backends`; backends that cannot stream (RunPod)
    refuse with FAILED_PRECONDITION saying what can."""

    def open_session(
        config: streaming_pb2.StreamingConfig, output: LiveOutput[Response]
    ) -> OrchestratedSession:
        if not hasattr(backends, "open_transcription_stream"):
            raise PreconditionFailed(
                "this orchestrator's backends cannot stream (RunPod endpoints answer whole jobs); "
                "use the gRPC or in-process backends for StreamingOrchestrate"
            )
        return OrchestratedSession(config, output, backends)

    return open_session


# gRPC backends --------------------------------------------------------------------------------

_END = object()


class GrpcStreamSession:
    """A backend's Streaming* RPC as a LiveSession: samples go out as f32le audio messages (a
    bounded queue: a slow backend slows the orchestrator's reader, and so the client), its
    responses come back through `output`, its errors as ours naming the backend."""

    def __init__(
        self,
        backend: str,
        method: Callable[..., Iterator[Any]],
        request_type: Any,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[Any],
        metadata: tuple[tuple[str, str], ...],
        error_for: Callable[[str, grpc.RpcError], ServiceError],
    ) -> None:
        self.backend = backend
        self._output = output
        self._requests: queue.Queue[Any] = queue.Queue(maxsize=_BACKEND_QUEUE)
        self._cancelled = threading.Event()
        self._error_for = error_for
        request_id = current_request_id()
        self._call: Any = method(
            self._messages(request_type, config),
            metadata=metadata + (((REQUEST_ID_KEY, request_id),) if request_id else ()) or None,
        )
        self._reader = threading.Thread(target=self._read, name=f"{backend}-stream", daemon=True)
        self._reader.start()

    def _messages(self, request_type: Any, config: streaming_pb2.StreamingConfig) -> Iterator[Any]:
        yield request_type(config=config)
        while True:
            item = self._requests.get()
            if item is _END:
                return
            yield request_type(audio=item)

    def _read(self) -> None:
        try:
            for response in self._call:
                self._output.send(response)
        except grpc.RpcError as error:
            if not self._cancelled.is_set():
                self._output.end(self._error_for(self.backend, error))
            return
        self._output.end()

    def feed(self, samples: Samples) -> None:
        data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
        while not self._cancelled.is_set():
            try:
                self._requests.put(data, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self._put_end()

    def cancel(self) -> None:
        self._cancelled.set()
        self._call.cancel()
        self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._requests.put(_END, timeout=0.1)
                return
            except queue.Full:
                if self._cancelled.is_set():
                    with contextlib.suppress(queue.Empty):  # make room: nothing reads the audio now
                        self._requests.get_nowait()
