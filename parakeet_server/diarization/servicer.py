"""The DiarizationService request logic: the one implementation behind gRPC and RunPod.

Cheap checks (speaker counts, response format) run before the audio is fetched or decoded, so a
request that cannot succeed costs nothing. StreamingDiarize runs on the live-stream framework
(parakeet_server.core.live) with a DiarizeSession per stream (parakeet_server.diarization.live). Errors are raised as parakeet_server.core.errors types; the
gRPC interceptor and the RunPod shim turn them into status codes and `{"error": ...}`.
"""

from __future__ import annotations

from collections.abc import Iterator

from parakeet.formats import Rpc
from parakeet.v1 import audio_pb2, diarization_pb2, diarization_pb2_grpc, streaming_pb2
from parakeet_server.core.audio import AudioLimits, Waveform, load_audio
from parakeet_server.core.context import CallContext, remaining_seconds
from parakeet_server.core.errors import DeadlineExceeded
from parakeet_server.core.formats import render_document, requested_format
from parakeet_server.core.live import LiveLimits, LiveOutput, StreamContext, serve_live
from parakeet_server.core.memory import track_audio
from parakeet_server.core.metrics import AUDIO_SECONDS
from parakeet_server.core.times import whole_ms
from parakeet_server.diarization.live import DiarizeSession, open_diarizer
from parakeet_server.diarization.live_names import LiveNaming
from parakeet_server.diarization.selection import Diarizer
from parakeet_server.diarization.types import SpeakerCounts, carry_overlap
from parakeet_server.diarization.voiceprints import (
    check_names,
    check_threshold,
    embedder_for,
    enroll,
    identify,
    known_voices,
)


def speaker_counts(request: diarization_pb2.DiarizeRequest | streaming_pb2.StreamingConfig) -> SpeakerCounts:
    """The request's speaker counts (unset fields: estimate), or InvalidRequest saying which
    value to change (SpeakerCounts checks them)."""
    return SpeakerCounts(
        num_speakers=request.num_speakers if request.HasField("num_speakers") else None,
        min_speakers=request.min_speakers if request.HasField("min_speakers") else None,
        max_speakers=request.max_speakers if request.HasField("max_speakers") else None,
    )


class DiarizationServicer(diarization_pb2_grpc.DiarizationServiceServicer):
    """Serves Diarize over a loaded engine (pyannote or the offline backend)."""

    def __init__(
        self, engine: Diarizer, limits: AudioLimits | None = None, live_limits: LiveLimits | None = None
    ) -> None:
        self._engine = engine
        self._limits = limits or AudioLimits()
        self.live_limits = live_limits or LiveLimits()

    @track_audio  # large requests give their memory back to the system when they end
    def Diarize(
        self, request: diarization_pb2.DiarizeRequest, context: CallContext
    ) -> diarization_pb2.DiarizeResponse:
        counts = speaker_counts(request)
        rendered_as = requested_format(request.response_format, Rpc.DIARIZE)
        threshold = request.speaker_match_threshold if request.HasField("speaker_match_threshold") else None
        check_threshold(threshold)
        check_names(request.known_speakers)
        embedder = embedder_for(self._engine) if request.known_speakers else None
        voices = known_voices(embedder, request.known_speakers, self._load) if embedder is not None else []
        waveform = load_audio(request.audio, self._limits, time_budget_s=remaining_seconds(context))
        AUDIO_SECONDS.labels("diarization").inc(waveform.duration)
        if not context.is_active():
            raise DeadlineExceeded(
                "the deadline passed before diarization started", reason="DEADLINE_EXCEEDED"
            )
        result = self._engine.diarize(
            waveform, counts, exclusive=request.exclusive, should_stop=lambda: not context.is_active()
        )
        identities: list[audio_pb2.SpeakerIdentity] = []
        if embedder is not None:
            identified = identify(embedder, waveform, result, voices, threshold)
            result, identities = carry_overlap(result, identified.diarization), identified.identities
        turns = [audio_pb2.SpeakerTurn(start=t.start, end=t.end, speaker=t.speaker) for t in result.turns]
        return diarization_pb2.DiarizeResponse(
            speaker_identities=identities,
            segments=turns,
            overlap_segments=[
                audio_pb2.SpeakerTurn(start=t.start, end=t.end, speaker=t.speaker) for t in result.overlap
            ],
            num_speakers=result.num_speakers,
            duration=whole_ms(waveform.duration),
            model=self._engine.name,
            response_format=rendered_as,
            document=render_document(rendered_as, (), turns),
        )

    @track_audio
    def Enroll(
        self, request: diarization_pb2.EnrollRequest, context: CallContext
    ) -> diarization_pb2.EnrollResponse:
        """A voiceprint of the one speaker in the audio, made by this engine's embedding model."""
        embedder = embedder_for(self._engine)
        waveform = load_audio(request.audio, self._limits, time_budget_s=remaining_seconds(context))
        AUDIO_SECONDS.labels("diarization").inc(waveform.duration)
        return diarization_pb2.EnrollResponse(
            voiceprint=enroll(embedder, waveform),
            name=request.name,
            duration=whole_ms(waveform.duration),
            model=self._engine.name,
        )

    def _load(self, audio: audio_pb2.Audio) -> Waveform:
        """A known speaker's reference audio, under the same limits as the request's."""
        return load_audio(audio, self._limits)

    def StreamingDiarize(
        self, request_iterator: Iterator[diarization_pb2.StreamingDiarizeRequest], context: StreamContext
    ) -> Iterator[diarization_pb2.StreamingDiarizeResponse]:
        """Speaker turns while the audio streams: a `turn` per decided turn, labels fixed for the stream.

        Of the StreamingConfig, the audio format, the speaker counts (validated as Diarize
        validates them: INVALID_FIELD) and the known speakers with speaker_match_threshold (named
        live: live_names.py) are used; `language` is accepted and ignored (speakers have no
        language); interim_results, word_timestamps, endpoint_silence_ms, diarize, hotwords and
        speakers_optional concern transcription and are ignored. min_speakers is validated but
        cannot be honoured live (a voice heard once is never split later).
        """
        return serve_live(request_iterator, context, self.open_session, self.live_limits)

    def open_session(
        self,
        config: streaming_pb2.StreamingConfig,
        output: LiveOutput[diarization_pb2.StreamingDiarizeResponse],
    ) -> DiarizeSession:
        """A live session for one stream (also what the orchestrator opens in process).

        Known speakers are checked here, before any audio flows: names, the threshold, and each
        voiceprint against this engine's embedding model (VOICEPRINT_MISMATCH); reference audio
        is enrolled now."""
        counts = speaker_counts(config)
        threshold = config.speaker_match_threshold if config.HasField("speaker_match_threshold") else None
        check_threshold(threshold)
        check_names(config.known_speakers)
        naming = None
        if config.known_speakers:
            embedder = embedder_for(self._engine)
            voices = known_voices(embedder, config.known_speakers, self._load)
            naming = LiveNaming(embedder, voices, threshold)
        engine = self._engine
        return DiarizeSession(
            lambda should_stop: open_diarizer(engine, counts, should_stop),
            output,
            engine.name,
            min_speakers=counts.min_speakers,
            naming=naming,
        )
