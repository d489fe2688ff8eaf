"""A gRPC server whose three Streaming* methods record what a client sends and answer from a
script: for testing the client side of live streams (order, bytes, pacing, cancellation, error
mapping) without a model. The real servicers' streams are tested in their services' tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import status_pb2

from parakeet.errors import REQUEST_ID_KEY, error_info
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

REQUEST_ID = "req-stream-1"


@dataclass
class Failure:
    """The status a scripted stream ends with, its ErrorInfo reason and an x-request-id trailer."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None


@dataclass
class Script:
    """`replies[i] = (n, response)`: send `response` once `n` audio messages have arrived (None:
    after the client half-closes); then end OK, with `failure`, or (`until_cancelled`) keep
    sending progress messages until the client cancels."""

    replies: list[tuple[int | None, Any]] = field(default_factory=list)
    failure: Failure | None = None
    until_cancelled: bool = False
    # Fail with `failure` as soon as this many messages (the config included) have arrived, while
    # the client is still sending: a refusal mid-write.
    fail_after_messages: int | None = None


@dataclass
class Received:
    """What one call carried: the method, its metadata, and each request with its arrival time."""

    method: str
    metadata: dict[str, str]
    requests: list[tuple[float, Any]] = field(default_factory=list)
    finished: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def config(self) -> streaming_pb2.StreamingConfig:
        first = self.requests[0][1]
        assert first.WhichOneof("streaming_request") == "config"
        return first.config

    @property
    def audio(self) -> list[bytes]:
        """The audio messages in order (every message after the first must be audio)."""
        kinds = [request.WhichOneof("streaming_request") for _at, request in self.requests[1:]]
        assert set(kinds) <= {"audio"}, kinds
        return [request.audio for _at, request in self.requests[1:]]

    @property
    def audio_times(self) -> list[float]:
        return [at for at, _request in self.requests[1:]]


class _Status(grpc.Status):  # type: ignore[misc]
    def __init__(self, failure: Failure) -> None:
        details = []
        if failure.reason:
            packed = any_pb2.Any()
            packed.Pack(error_info(failure.reason))
            details.append(packed)
        status = status_pb2.Status(code=failure.code.value[0], message=failure.message, details=details)
        self.code = failure.code
        self.details = failure.message
        self.trailing_metadata = (
            ("grpc-status-details-bin", status.SerializeToString()),
            (REQUEST_ID_KEY, REQUEST_ID),
        )


class ScriptedStreams(
    orchestrator_pb2_grpc.OrchestratorServiceServicer,
    transcription_pb2_grpc.TranscriptionServiceServicer,
    diarization_pb2_grpc.DiarizationServiceServicer,
):
    """All three Streaming* methods over one `script`; every call is appended to `calls`."""

    def __init__(self) -> None:
        self.script = Script()
        self.calls: list[Received] = []

    def _serve(self, method: str, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        received = Received(method, {key: str(value) for key, value in context.invocation_metadata()})
        self.calls.append(received)
        if not context.add_callback(lambda: None if received.finished else received.cancelled.set()):
            received.cancelled.set()  # over before the handler ran
        pending = list(self.script.replies)
        audio = 0
        for request in requests:
            received.requests.append((time.monotonic(), request))
            if self.script.failure is not None and len(received.requests) == self.script.fail_after_messages:
                received.finished = True
                context.abort_with_status(_Status(self.script.failure))
            audio += request.WhichOneof("streaming_request") == "audio"
            while pending and pending[0][0] is not None and pending[0][0] <= audio:
                yield pending.pop(0)[1]
        for _after, response in pending:
            yield response
        if self.script.until_cancelled:
            while context.is_active():
                time.sleep(0.02)
            return  # cancelled: never finished
        if self.script.failure is not None:
            received.finished = True
            context.abort_with_status(_Status(self.script.failure))
        received.finished = True

    def StreamingOrchestrate(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return self._serve("orchestrate", request_iterator, context)

    def StreamingTranscribe(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return self._serve("transcribe", request_iterator, context)

    def StreamingDiarize(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return self._serve("diarize", request_iterator, context)


@pytest.fixture
def scripted() -> Iterator[tuple[str, ScriptedStreams]]:
    """HOST:PORT of a server on loopback hosting `ScriptedStreams`, and the servicer."""
    servicer = ScriptedStreams()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)
    transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(servicer, server)
    diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0.5).wait()


# -- scripted responses --------------------------------------------------------------------------


def interim(
    text: str, start: float = 0.0, processed: float = 0.0
) -> orchestrator_pb2.StreamingOrchestrateResponse:
    return orchestrator_pb2.StreamingOrchestrateResponse(
        interim=streaming_pb2.InterimResult(text=text, start=start), processed_seconds=processed
    )


def final(
    text: str, start: float, end: float, speaker: str = "", index: int = 0
) -> orchestrator_pb2.StreamingOrchestrateResponse:
    return orchestrator_pb2.StreamingOrchestrateResponse(
        final_result=streaming_pb2.FinalResult(
            text=text, start=start, end=end, speaker=speaker, utterance_index=index
        ),
        processed_seconds=end,
    )


def summary(
    duration: float, speakers: tuple[str, ...] = (), warnings: tuple[str, ...] = ()
) -> orchestrator_pb2.StreamingOrchestrateResponse:
    return orchestrator_pb2.StreamingOrchestrateResponse(
        summary=streaming_pb2.StreamingSummary(
            duration=duration,
            num_speakers=len(speakers),
            speakers=list(speakers),
            warnings=list(warnings),
            model="scripted",
        ),
        processed_seconds=duration,
    )


TRANSCRIBE_FINAL = transcription_pb2.StreamingTranscribeResponse(
    final_result=streaming_pb2.FinalResult(text="hello", start=0.5, end=1.0)
)
DIARIZE_TURN = diarization_pb2.StreamingDiarizeResponse(
    turn=audio_pb2.SpeakerTurn(start=0.0, end=1.0, speaker="SPEAKER_00"), processed_seconds=1.0
)
