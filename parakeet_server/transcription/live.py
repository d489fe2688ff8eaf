"""Live transcription sessions: many client streams on one StreamingTranscriber and one driver thread.

Why a driver: the transcriber decodes every stream that has a whole chunk in one batched pass
(`step()`), so passes must be run by one thread for all streams, not by each stream's reader.
The driver sleeps on a condition until some stream has a chunk, steps, and hands each event to
its stream's session, which turns it into StreamingTranscribeResponses. A session's reader
thread only queues audio (`feed`), and waits while its stream holds more than `max_buffered_s`
of undecoded audio, so a client sending faster than real time is slowed to the decoding rate
instead of filling memory.

A pass that raises fails the streams in it (INTERNAL, `output.end(error)`), never the driver.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from parakeet.v1 import audio_pb2, streaming_pb2, transcription_pb2
from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.errors import InvalidRequest, ServiceError
from parakeet_server.core.live import LiveOutput
from parakeet_server.core.times import whole_ms
from parakeet_server.transcription.hotwords import HotwordSet, check_hotwords
from parakeet_server.transcription.servicer import check_language
from parakeet_server.transcription.streaming import (
    EndOfUtterance,
    Final,
    Interim,
    StreamEvent,
    StreamingTranscriber,
)
from parakeet_server.transcription.streaming_config import MIN_ENDPOINT_SILENCE_MS

log = logging.getLogger(__name__)

Response = transcription_pb2.StreamingTranscribeResponse
SpeechEventType = streaming_pb2.SpeechEventType

# A stream may hold this much audio not yet decoded before its feed() waits for the driver.
MAX_BUFFERED_S = 10.0
NOT_DIARIZING = (
    "StreamingTranscribe does not diarize; use OrchestratorService.StreamingOrchestrate with diarize"
)


class StreamFailed(ServiceError):
    """Decoding a stream failed on the server (INTERNAL); the stream cannot go on."""


class LiveTranscription:
    """Opens live sessions and runs the one driver thread that decodes all of them."""

    def __init__(
        self,
        load: Callable[[], StreamingTranscriber],
        model: str,
        max_buffered_s: float = MAX_BUFFERED_S,
    ) -> None:
        """`load` builds the transcriber (a model load: called by `load()` at warm-up, or by the
        first session); `model` is the name the summaries report."""
        self._load = load
        self.model = model
        self.max_buffered_s = max_buffered_s
        self._transcriber: StreamingTranscriber | None = None
        self._load_lock = threading.Lock()
        # Guards the sessions' states and wakes the driver (audio arrived) and the feeders (a
        # step freed buffer space).
        self._wake = threading.Condition()
        # Held while events are produced and delivered, so a stream's flush (finish) never
        # overtakes the delivery of the step before it.
        self._route = threading.Lock()
        self._sessions: dict[int, TranscriptionSession] = {}
        self._stopped = False
        self._driver: threading.Thread | None = None

    @classmethod
    def over(cls, transcriber: StreamingTranscriber, model: str, **options: float) -> LiveTranscription:
        """Sessions on an already loaded transcriber."""
        return cls(lambda: transcriber, model, **options)

    @property
    def loaded(self) -> bool:
        return self._transcriber is not None

    @property
    def transcriber(self) -> StreamingTranscriber:
        """The transcriber, loaded (and the driver started) on first use."""
        if self._transcriber is None:
            with self._load_lock:
                if self._transcriber is None:
                    transcriber = self._load()
                    self._driver = threading.Thread(
                        target=self._drive, args=(transcriber,), name="live-transcription", daemon=True
                    )
                    self._transcriber = transcriber
                    self._driver.start()
        return self._transcriber

    def load(self) -> None:
        """Load the streaming model now (warm-up), so the first stream does not wait for it."""
        _ = self.transcriber

    def stop(self) -> None:
        """End the driver thread (open sessions get nothing more); for tests and shutdown."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        if self._driver is not None:
            self._driver.join()

    @property
    def open_sessions(self) -> int:
        with self._wake:
            return len(self._sessions)

    def open_session(
        self, config: streaming_pb2.StreamingConfig, output: LiveOutput[Response]
    ) -> TranscriptionSession:
        """A session for one stream; refuses options StreamingTranscribe does not serve."""
        hotwords = check_config(config)
        silence = config.endpoint_silence_ms or None
        transcriber = self.transcriber
        stream = transcriber.open_stream(endpoint_silence_ms=silence, hotwords=hotwords)
        session = TranscriptionSession(self, transcriber, stream, config, output)
        with self._wake:
            self._sessions[stream] = session
        return session

    # The driver ---------------------------------------------------------------------------

    def _drive(self, transcriber: StreamingTranscriber) -> None:
        while True:
            with self._wake:
                while not self._stopped and not transcriber.ready_streams():
                    self._wake.wait()
                if self._stopped:
                    return
            try:
                with self._route:
                    self._step(transcriber)
            except Exception:  # a bug outside a pass: fail what is open rather than hang it
                log.exception("the live transcription driver's step failed")
                for session in self._all():
                    session.fail(StreamFailed("live transcription failed on the server; start a new stream"))
            with self._wake:
                self._wake.notify_all()  # feeders waiting for buffer space

    def _step(self, transcriber: StreamingTranscriber) -> None:
        report = transcriber.step()
        with self._wake:
            sessions = dict(self._sessions)
        for stream, error in report.failed.items():
            if stream in sessions:
                sessions.pop(stream).fail(
                    StreamFailed(
                        f"decoding the stream failed on the server ({type(error).__name__}); "
                        "start a new stream"
                    )
                )
        by_stream: dict[int, list[StreamEvent]] = {}
        for event in report.events:
            by_stream.setdefault(event.stream, []).append(event)
        for stream, position in report.positions.items():
            session = sessions.get(stream)
            if session is not None:
                session.deliver(by_stream.get(stream, []), position)

    def _all(self) -> list[TranscriptionSession]:
        with self._wake:
            return list(self._sessions.values())

    def _forget(self, stream: int) -> None:
        with self._wake:
            self._sessions.pop(stream, None)
            self._wake.notify_all()


def check_config(config: streaming_pb2.StreamingConfig) -> HotwordSet:
    """Refuse what StreamingTranscribe cannot do (speakers, another language, too short an endpoint,
    hotwords over the limits); the stream's hotwords, checked as Transcribe checks them."""
    if config.diarize:
        raise InvalidRequest(f"diarize: {NOT_DIARIZING}", reason="INVALID_FIELD")
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        if config.HasField(name):
            raise InvalidRequest(f"{name}: {NOT_DIARIZING}", reason="INVALID_FIELD")
    check_language(config.language)
    hotwords = check_hotwords(config.hotwords)
    if config.endpoint_silence_ms and config.endpoint_silence_ms < MIN_ENDPOINT_SILENCE_MS:
        raise InvalidRequest(
            f"endpoint_silence_ms: must be 0 (the server's default) or at least "
            f"{MIN_ENDPOINT_SILENCE_MS} ms (got {config.endpoint_silence_ms} ms)",
            reason="INVALID_FIELD",
        )
    return hotwords


class TranscriptionSession:
    """One live stream: audio in (`feed`), responses out (through the output), finish or cancel."""

    def __init__(
        self,
        live: LiveTranscription,
        transcriber: StreamingTranscriber,
        stream: int,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[Response],
    ) -> None:
        self._live = live
        self._transcriber = transcriber
        self.stream = stream
        self._output = output
        self._interims = config.interim_results if config.HasField("interim_results") else True
        self._words = config.word_timestamps if config.HasField("word_timestamps") else True
        self._open = True  # False once finished, cancelled or failed: no more deliveries
        # Feeding and closing the stream exclude each other, so the summary's duration counts
        # exactly the audio the flush decoded (draining calls finish while the reader feeds).
        self._feeding = threading.Lock()
        self._fed = 0  # samples
        self._processed = 0.0  # seconds decoded, reported on every response
        self._finals = 0
        self._speaking = False  # SPEECH_STARTED sent, no final yet
        self._ending = False  # a final sent, its END_OF_UTTERANCE not yet
        self._utterance_end = 0.0  # the last final's end

    # LiveSession --------------------------------------------------------------------------

    def feed(self, samples: npt.NDArray[np.float32]) -> None:
        """Queue audio for the driver; waits while the stream holds over `max_buffered_s` undecoded."""
        if not self._open or not len(samples):
            return
        limit = round(self._live.max_buffered_s * SAMPLE_RATE)
        wake = self._live._wake
        try:
            with self._feeding:
                self._transcriber.feed(self.stream, samples)
                self._fed += len(samples)
            with wake:
                wake.notify_all()
                while self._open and self._transcriber.pending_samples(self.stream) > limit:
                    wake.wait()
        except InvalidRequest:  # the stream was closed under us (cancelled or failed meanwhile)
            if self._open:
                raise

    def finish(self) -> None:
        """Decode the rest, send the last finals and the summary, and end the stream."""
        with self._live._route:  # after the delivery of any step already decoding this stream
            if not self._close():
                return
            try:
                with self._feeding:
                    events = self._transcriber.close(self.stream)
                    fed = self._fed
            except Exception as error:
                log.exception("flushing live stream %d failed", self.stream)
                self._output.end(
                    StreamFailed(f"finishing the stream failed on the server ({type(error).__name__})")
                )
                return
            self._processed = whole_ms(fed / SAMPLE_RATE)
            for event in events:
                self._send_event(event)
            summary = streaming_pb2.StreamingSummary(
                duration=self._processed, model=self._live.model, num_finals=self._finals
            )
            self._send(Response(summary=summary))
        self._output.end()

    def cancel(self) -> None:
        """Drop the stream's audio and decoder state now; idempotent."""
        if self._close():
            with contextlib.suppress(InvalidRequest):  # already gone
                self._transcriber.cancel(self.stream)

    # From the driver ------------------------------------------------------------------------

    def deliver(self, events: Sequence[StreamEvent], position: float) -> None:
        """One step's events for this stream, as responses; a progress response if none is sent."""
        if not self._open:
            return
        self._processed = position
        try:
            sent = sum(self._send_event(event) for event in events)
            if not sent:
                self._send(Response())
        except Exception as error:  # the output refused: this stream cannot go on
            log.exception("delivering to live stream %d failed", self.stream)
            self.fail(StreamFailed(f"sending results failed on the server ({type(error).__name__})"))

    def fail(self, error: ServiceError) -> None:
        """End the stream with `error`, freeing its state."""
        if self._close():
            try:
                self._transcriber.cancel(self.stream)
            except Exception:  # the stream is failing already; its state goes either way
                log.exception("cancelling failed live stream %d", self.stream)
            self._output.end(error)

    # Responses -------------------------------------------------------------------------------

    def _close(self) -> bool:
        """Mark the session closed; False when it already was."""
        with self._live._wake:
            was_open, self._open = self._open, False
        self._live._forget(self.stream)
        return was_open

    def _send(self, response: Response) -> None:
        response.processed_seconds = self._processed
        self._output.send(response)

    def _speech_started(self, at: float) -> int:
        if self._speaking:
            return 0
        self._speaking = True
        event = streaming_pb2.SpeechEvent(type=SpeechEventType.SPEECH_EVENT_TYPE_SPEECH_STARTED, time=at)
        self._send(Response(speech_event=event))
        return 1

    def _send_event(self, event: StreamEvent) -> int:
        """The responses for one event; how many were sent."""
        if isinstance(event, Interim):
            sent = self._speech_started(event.start)
            if self._interims:
                interim = streaming_pb2.InterimResult(text=event.text, start=event.start)
                if event.stability is not None:
                    interim.stability = event.stability
                self._send(Response(interim=interim))
                sent += 1
            return sent
        if isinstance(event, Final):
            sent = self._speech_started(event.words[0].start)
            words = [
                audio_pb2.Word(word=w.word, start=w.start, end=w.end, confidence=w.confidence)
                if w.confidence is not None
                else audio_pb2.Word(word=w.word, start=w.start, end=w.end)
                for w in event.words
            ]
            final = streaming_pb2.FinalResult(
                text=event.text,
                words=words if self._words else [],
                start=event.words[0].start,
                end=event.words[-1].end,
                utterance_index=self._finals,
            )
            self._finals += 1
            self._send(Response(final_result=final))
            self._speaking, self._ending = False, True
            self._utterance_end = final.end
            return sent + 1
        self._speaking = False
        if isinstance(event, EndOfUtterance) and self._ending:
            # Only an utterance whose final was sent ends; a close without speech sends nothing.
            self._ending = False
            # At the end of its last word, so a stream's events read in time order (the endpoint
            # itself is detected later, after the silence and the right context).
            end = streaming_pb2.SpeechEvent(
                type=SpeechEventType.SPEECH_EVENT_TYPE_END_OF_UTTERANCE, time=self._utterance_end
            )
            self._send(Response(speech_event=end))
            return 1
        return 0
