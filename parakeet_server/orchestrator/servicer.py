"""The OrchestratorService request logic: diarize and transcribe concurrently, merge, render.

The service this replaces ran diarization and transcription one after the other; here both
start at once, so a request costs about as long as the slower of the two. Words are attributed
to speakers by the shared merge module, the same one the transcription endpoint uses.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc

from parakeet.formats import Rpc
from parakeet.v1 import (
    audio_pb2,
    diarization_pb2,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    streaming_pb2,
    transcription_pb2,
)
from parakeet_server.core.context import CallContext
from parakeet_server.core.errors import InvalidRequest, LimitExceeded, ServiceError
from parakeet_server.core.formats import render_document, requested_detail, requested_format
from parakeet_server.core.live import LiveLimits, LiveOutput, LiveSession, serve_live
from parakeet_server.core.memory import track_audio
from parakeet_server.core.merge import (
    assign_speakers,
    build_utterances,
    split_segments_by_speaker,
)
from parakeet_server.diarization.servicer import speaker_counts
from parakeet_server.orchestrator.backends import Backends
from parakeet_server.orchestrator.live import open_orchestrated
from parakeet_server.transcription.hotwords import check_hotwords

log = logging.getLogger(__name__)

# A new utterance starts after this much silence even when the speaker stays the same.
UTTERANCE_PAUSE_S = 1.0


def _transcribe_request(request: orchestrator_pb2.OrchestrateRequest) -> transcription_pb2.TranscribeRequest:
    """Always ask for words and segments: the merge needs word times whatever the caller wants back."""
    return transcription_pb2.TranscribeRequest(
        audio=request.audio,
        language=request.language,
        timestamps=True,
        word_timestamps=True,
        response_format=audio_pb2.RESPONSE_FORMAT_JSON,
        hotwords=request.hotwords,
    )


def _diarize_request(request: orchestrator_pb2.OrchestrateRequest) -> diarization_pb2.DiarizeRequest:
    diarize = diarization_pb2.DiarizeRequest(audio=request.audio, exclusive=True)
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        if request.HasField(name):
            setattr(diarize, name, getattr(request, name))
    return diarize


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Joins a transcription backend and a diarization backend into one speaker-attributed transcript."""

    def __init__(
        self, backends: Backends, max_concurrent_calls: int = 32, live_limits: LiveLimits | None = None
    ) -> None:
        self.backends = backends
        self.live_limits = live_limits or LiveLimits()
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent_calls, thread_name_prefix="orchestrate")
        self._open_stream = open_orchestrated(backends)

    def StreamingOrchestrate(
        self,
        request_iterator: Iterator[orchestrator_pb2.StreamingOrchestrateRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[orchestrator_pb2.StreamingOrchestrateResponse]:
        """Live audio in, interim and speaker-attributed final results out (orchestrator/live.py)."""
        return serve_live(request_iterator, context, self._open_live, self.live_limits)

    def _open_live(
        self,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[orchestrator_pb2.StreamingOrchestrateResponse],
    ) -> LiveSession:
        counts = diarization_pb2.DiarizeRequest()
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            if config.HasField(name):
                setattr(counts, name, getattr(config, name))
        speaker_counts(counts)  # an impossible count is an error even without diarize
        return self._open_stream(config, output)

    @track_audio  # large requests give their memory back to the system when they end
    def Orchestrate(
        self, request: orchestrator_pb2.OrchestrateRequest, context: CallContext
    ) -> orchestrator_pb2.OrchestrateResponse:
        rendered_as = requested_format(request.response_format, Rpc.ORCHESTRATE, speakers=request.diarize)
        speaker_counts(_diarize_request(request))  # an impossible count is an error even without diarize
        check_hotwords(request.hotwords)  # refused here, before a diarization starts for nothing
        if not request.audio.WhichOneof("source"):
            raise InvalidRequest(
                "audio is required: set audio.uri (http/https URL) or audio.content (file bytes)",
                reason="AUDIO_MISSING",
            )
        diarization: Future[diarization_pb2.DiarizeResponse] | None = None
        if request.diarize:
            # copy_context: the backend call keeps this request's id (logs, x-request-id metadata).
            diarization = self._pool.submit(
                contextvars.copy_context().run, self.backends.diarize, _diarize_request(request), context
            )
        warnings: list[str] = []
        try:
            transcript = self.backends.transcribe(_transcribe_request(request), context)
            turns = self._turns(request, diarization, warnings)
        finally:
            if diarization is not None:
                diarization.cancel()
        response = self._merge(request, transcript, turns, rendered_as)
        response.warnings.extend(warnings)
        return response

    @staticmethod
    def _turns(
        request: orchestrator_pb2.OrchestrateRequest,
        diarization: Future[diarization_pb2.DiarizeResponse] | None,
        warnings: list[str],
    ) -> diarization_pb2.DiarizeResponse | None:
        """The diarization result; with speakers_optional, a failure becomes a warning instead."""
        if diarization is None:
            return None
        try:
            return diarization.result()
        except ServiceError as error:
            if not request.speakers_optional or isinstance(error, (InvalidRequest, LimitExceeded)):
                raise
            log.warning("diarization failed, answering without speakers: %s", error.message)
            warnings.append(f"speakers are missing: diarization failed ({error.code.name}: {error.message})")
            return None

    def _merge(
        self,
        request: orchestrator_pb2.OrchestrateRequest,
        transcript: transcription_pb2.TranscribeResponse,
        diarization: diarization_pb2.DiarizeResponse | None,
        rendered_as: audio_pb2.ResponseFormat,
    ) -> orchestrator_pb2.OrchestrateResponse:
        words = list(transcript.words)
        segments = list(transcript.segments)
        turns = list(diarization.segments) if diarization is not None else []
        utterances: list[orchestrator_pb2.Utterance] = []
        model = transcript.model
        if diarization is not None:
            words = assign_speakers(words, turns)
            segments = split_segments_by_speaker(segments, words)
            utterances = build_utterances(words, UTTERANCE_PAUSE_S)
            model = f"{transcript.model} + {diarization.model}"
        with_segments, with_words = requested_detail(request)
        return orchestrator_pb2.OrchestrateResponse(
            text=transcript.text,
            segments=segments if with_segments else [],
            words=words if with_words else [],
            utterances=utterances,
            speaker_turns=turns,
            num_speakers=diarization.num_speakers if diarization is not None else 0,
            duration=transcript.duration,
            language=transcript.language,
            model=model,
            response_format=rendered_as,
            document=render_document(rendered_as, segments, turns, words=words),
        )
