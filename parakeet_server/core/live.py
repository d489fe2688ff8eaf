"""The one request loop behind every Streaming* RPC: config first, audio after, results as they come.

Each service supplies only a session (`LiveSession`): what to do with 16 kHz samples, how to
finish (flush finals, send the summary) and how to drop everything. This module does the rest
the same way for all three services: the stream protocol (config first and only first, then
audio), incremental decoding of the configured encoding, a reader thread so results go out while
audio comes in, back-pressure (a session's `feed` may block, which stops reading and lets HTTP/2
flow control slow the client), the idle timeout, the maximum stream duration, cancellation, and
draining on SIGTERM (live streams get their finals before the server stops).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from parakeet.v1 import streaming_pb2
from parakeet_server.core.audio import SAMPLE_RATE
from parakeet_server.core.errors import InvalidRequest, LimitExceeded, ServiceError

if TYPE_CHECKING:
    from parakeet_server.core.stream_audio import StreamDecoder

log = logging.getLogger(__name__)

R = TypeVar("R")
Samples = npt.NDArray[np.float32]
# How often the handler looks at the idle timeout, draining and cancellation while no result comes.
_POLL_S = 0.1


@dataclass(frozen=True)
class LiveLimits:
    """How long a stream may stay silent (no audio messages) and how much audio it may carry."""

    idle_timeout_s: float = 30.0
    max_stream_seconds: float = 4 * 3600.0


class LiveSession(Protocol):
    """One live stream inside a service; see the module docstring for who calls what."""

    def feed(self, samples: Samples) -> None:
        """16 kHz mono samples, from one reader thread; may block while the session catches up."""

    def finish(self) -> None:
        """No more audio: send the last results and one StreamingSummary, then `output.end()`."""

    def cancel(self) -> None:
        """Drop everything now (the client went away or the stream failed); idempotent."""


class LiveOutput(Generic[R]):
    """Where a session sends its responses, and says it is over (with an error if it failed)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def send(self, response: R) -> None:
        self._queue.put((False, response))

    def end(self, error: ServiceError | None = None) -> None:
        self._queue.put((True, error))

    def next(self, timeout: float) -> tuple[bool, Any] | None:
        """(False, response), (True, error or None) at the end, or None when nothing came in time."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


Opener = Callable[[streaming_pb2.StreamingConfig, LiveOutput[R]], LiveSession]


class StreamingRequest(Protocol):
    """The three Streaming*Request messages: a oneof of `config` and `audio`."""

    config: streaming_pb2.StreamingConfig
    audio: bytes

    def WhichOneof(self, oneof_group: str, /) -> str | None: ...


@dataclass
class LiveRegistry:
    """The live streams of a process, so that draining can finish them all."""

    _streams: set[_LiveStream] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _draining: bool = False

    def add(self, stream: _LiveStream) -> None:
        with self._lock:
            self._streams.add(stream)
            draining = self._draining
        if draining:
            stream.finish()

    def remove(self, stream: _LiveStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)

    def finish_all(self) -> None:
        """Draining: every live stream (and any opened from now on) ends its audio here."""
        with self._lock:
            self._draining = True
            streams = list(self._streams)
        for stream in streams:
            stream.finish()


# The registry of the server hosting the current call (set by its interceptor), so draining one
# server finishes its own streams only; calls outside a server (embedded) use a process default.
_HOST_STREAMS: contextvars.ContextVar[LiveRegistry | None] = contextvars.ContextVar(
    "live_streams", default=None
)
_PROCESS_STREAMS = LiveRegistry()


@contextlib.contextmanager
def hosted_streams(registry: LiveRegistry) -> Iterator[None]:
    """Calls made inside register their live streams with `registry`."""
    token = _HOST_STREAMS.set(registry)
    try:
        yield
    finally:
        _HOST_STREAMS.reset(token)


class _LiveStream:
    """One call's state shared by its reader thread and its handler: when audio last came, how
    much, and whether the session was told to finish."""

    def __init__(self, session: LiveSession, output: LiveOutput[Any], limits: LiveLimits) -> None:
        self.session = session
        self.output = output
        self.limits = limits
        self.last_audio = time.monotonic()
        self.feeding = False  # the reader waits on the session (back-pressure), not on the client
        self.seconds = 0.0
        self.after_finals: ServiceError | None = None  # raised once the finals are out
        self._finished = False
        self._lock = threading.Lock()

    def finish(self) -> None:
        """Tell the session its audio ended (once), flushing in a thread so results keep flowing."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        threading.Thread(target=self._finish, name="live-finish", daemon=True).start()

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._finished

    def _finish(self) -> None:
        try:
            self.session.finish()
        except ServiceError as error:
            self.fail(error)
        except Exception:
            log.exception("a live session failed to finish")
            self.fail(ServiceError("the stream failed while flushing its last results; see the server log"))

    def fail(self, error: ServiceError) -> None:
        """End the stream with `error`: the session is dropped, results not sent yet are lost."""
        with self._lock:
            self._finished = True
        self.session.cancel()
        self.output.end(error)

    def read(self, requests: Iterator[StreamingRequest], decoder: StreamDecoder) -> None:
        """The reader thread: audio messages -> samples -> the session, until the audio ends."""
        try:
            for index, request in enumerate(requests, start=1):
                kind = request.WhichOneof("streaming_request")
                if kind == "config":
                    raise InvalidRequest(
                        f"message {index} of the stream is a second config; send the config once, first, "
                        "and only audio after it",
                        reason="STREAM_PROTOCOL",
                    )
                if kind is None or self.finished:
                    continue  # an empty message, or audio after the stream began to end
                self.feeding = True
                try:
                    fed = self._feed(decoder.feed(request.audio))
                finally:
                    self.feeding = False
                    self.last_audio = time.monotonic()
                if not fed:
                    return
            if not self.finished:
                self._feed(decoder.flush())
            self.finish()
        except ServiceError as error:
            self.fail(error)
        except Exception as error:
            # The call ended under the reader (cancelled, deadline, server stopping): the handler
            # cancels the session; anything else is a bug.
            if not _call_ended(error):
                log.exception("reading a live stream failed")
                self.fail(ServiceError("reading the stream failed; see the server log"))
        finally:
            decoder.close()

    def _feed(self, samples: Samples) -> bool:
        """Pass samples on within the duration limit; False once the limit ended the stream."""
        room = self.limits.max_stream_seconds - self.seconds
        seconds = len(samples) / SAMPLE_RATE
        if seconds > room:
            keep = max(0, int(room * SAMPLE_RATE))
            if keep:
                self.session.feed(samples[:keep])
            self.seconds += keep / SAMPLE_RATE
            self.after_finals = LimitExceeded(
                f"the stream passed the server's limit of {self.limits.max_stream_seconds:g} s of audio; "
                "its results up to the limit were sent. Start a new stream to go on",
                reason="DURATION_LIMIT",
                metadata={"limit_seconds": f"{self.limits.max_stream_seconds:g}"},
            )
            self.finish()
            return False
        if len(samples):
            self.seconds += seconds
            self.session.feed(samples)
        return True


def _call_ended(error: Exception) -> bool:
    """Whether reading requests failed because the call itself ended (grpc raises RpcError or a
    bare exception from a cancelled request iterator)."""
    import grpc

    return isinstance(error, grpc.RpcError) or type(error).__name__ in {"_Rendezvous", "_InactiveRpcError"}


def _first_config(requests: Iterator[StreamingRequest]) -> streaming_pb2.StreamingConfig:
    """The stream's config: its first message, which must carry only that."""
    first = next(requests, None)
    if first is None:
        raise InvalidRequest(
            "the stream ended before its config; send a config message first, then audio",
            reason="STREAM_PROTOCOL",
        )
    if first.WhichOneof("streaming_request") != "config":
        raise InvalidRequest(
            "the first message of a stream must be its config (audio came first); send "
            '{"config": {...}} first, then audio messages',
            reason="STREAM_PROTOCOL",
        )
    return first.config


class StreamContext(Protocol):
    """What serve_live needs of a call: grpc.ServicerContext, or embedded mode's stand-in."""

    def add_callback(self, callback: Callable[[], None]) -> bool: ...

    def is_active(self) -> bool: ...


def serve_live(
    requests: Iterator[StreamingRequest],
    context: StreamContext,
    open_session: Opener[R],
    limits: LiveLimits,
    registry: LiveRegistry | None = None,
) -> Iterator[R]:
    """Run one streaming call: yield the session's responses until it ends; raise its error then."""
    if registry is None:
        registry = _HOST_STREAMS.get()
    if registry is None:
        registry = _PROCESS_STREAMS
    from parakeet_server.core.stream_audio import stream_decoder  # PyAV, for a stream's first call

    config = _first_config(requests)
    decoder = stream_decoder(config.audio_format)
    output: LiveOutput[R] = LiveOutput()
    try:
        session = open_session(config, output)
    except BaseException:
        decoder.close()
        raise
    stream = _LiveStream(session, output, limits)
    ended = threading.Event()

    def on_call_done() -> None:
        if not ended.is_set():
            session.cancel()  # the client cancelled or went away: free the stream's state now
            output.end(None)

    context.add_callback(on_call_done)
    reader = threading.Thread(target=stream.read, args=(requests, decoder), name="live-reader", daemon=True)
    registry.add(stream)
    reader.start()
    try:
        while True:
            item = output.next(_POLL_S)
            if item is None:
                if not context.is_active():
                    session.cancel()
                    return
                idle = not stream.feeding and time.monotonic() - stream.last_audio > limits.idle_timeout_s
                if idle and not stream.finished:
                    log.info("a live stream sent no audio for %g s; finishing it", limits.idle_timeout_s)
                    stream.finish()
                continue
            is_end, value = item
            if not is_end:
                yield value
                continue
            ended.set()
            error = value or stream.after_finals
            if error is not None:
                raise error
            return
    finally:
        if not ended.is_set():
            ended.set()
            session.cancel()
        registry.remove(stream)
