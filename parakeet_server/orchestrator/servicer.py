"""The OrchestratorService request logic: diarize and transcribe concurrently, merge, render.

The service this replaces ran diarization and transcription one after the other; here both
start at once, so a request costs about as long as the slower of the two. Words are attributed
to speakers by the shared merge module, the same one the transcription endpoint uses.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
from parakeet_server.core.audio import AudioLimits, Waveform, encode_flac, load_channels
from parakeet_server.core.context import CallContext, remaining_seconds
from parakeet_server.core.errors import InvalidRequest, LimitExceeded, ServiceError
from parakeet_server.core.formats import render_document, requested_detail, requested_format
from parakeet_server.core.live import LiveLimits, LiveOutput, LiveSession, serve_live
from parakeet_server.core.memory import track_audio
from parakeet_server.core.merge import (
    assign_speakers,
    build_channel_utterances,
    build_utterances,
    by_channel,
    channel_speaker_label,
    merge_channels,
    speakers_in_order,
    split_segments_by_speaker,
    with_overlap,
)
from parakeet_server.diarization.servicer import speaker_counts
from parakeet_server.orchestrator.backends import Backends
from parakeet_server.orchestrator.live import open_orchestrated
from parakeet_server.transcription.crosstalk import gate_crosstalk
from parakeet_server.transcription.hotwords import check_hotwords

log = logging.getLogger(__name__)

# A new utterance starts after this much silence even when the speaker stays the same.
UTTERANCE_PAUSE_S = 1.0

ResultT = TypeVar("ResultT")
# Each channel's diarization (multichannel with diarize), channel by channel.
ChannelTurns = list[diarization_pb2.DiarizeResponse]


def _transcribe_request(request: orchestrator_pb2.OrchestrateRequest) -> transcription_pb2.TranscribeRequest:
    """Always ask for words and segments: the merge needs word times whatever the caller wants back."""
    return transcription_pb2.TranscribeRequest(
        audio=request.audio,
        language=request.language,
        timestamps=True,
        word_timestamps=True,
        response_format=audio_pb2.RESPONSE_FORMAT_JSON,
        hotwords=request.hotwords,
        multichannel=request.multichannel,
    )


def _diarize_request(request: orchestrator_pb2.OrchestrateRequest) -> diarization_pb2.DiarizeRequest:
    diarize = diarization_pb2.DiarizeRequest(
        audio=request.audio, exclusive=True, known_speakers=request.known_speakers
    )
    for name in ("num_speakers", "min_speakers", "max_speakers", "speaker_match_threshold"):
        if request.HasField(name):
            setattr(diarize, name, getattr(request, name))
    return diarize


def _channel_turns(channel: int, turns: Sequence[audio_pb2.SpeakerTurn]) -> list[audio_pb2.SpeakerTurn]:
    """One channel's turns with their speakers named within the channel (CHANNEL_0/SPEAKER_00)."""
    return [
        audio_pb2.SpeakerTurn(start=t.start, end=t.end, speaker=channel_speaker_label(channel, t.speaker))
        for t in turns
    ]


def _channel_identities(
    per_channel: Sequence[diarization_pb2.DiarizeResponse],
) -> list[audio_pb2.SpeakerIdentity]:
    """Each channel's speaker identities under the labels its turns get (CHANNEL_0/Alice)."""
    return [
        audio_pb2.SpeakerIdentity(
            speaker=channel_speaker_label(channel, identity.speaker),
            name=identity.name,
            similarity=identity.similarity,
        )
        for channel, result in enumerate(per_channel)
        for identity in result.speaker_identities
    ]


def _utterance_turns(utterances: Sequence[orchestrator_pb2.Utterance]) -> list[audio_pb2.SpeakerTurn]:
    """Speaker turns read off utterances (multichannel without diarize: each channel's speech)."""
    return [audio_pb2.SpeakerTurn(start=u.start, end=u.end, speaker=u.speaker) for u in utterances]


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Joins a transcription backend and a diarization backend into one speaker-attributed transcript."""

    def __init__(
        self,
        backends: Backends,
        max_concurrent_calls: int = 32,
        live_limits: LiveLimits | None = None,
        audio_limits: AudioLimits | None = None,
    ) -> None:
        """`audio_limits`: for the audio the orchestrator decodes itself (multichannel with
        diarize splits the channels for the diarization backend)."""
        self.backends = backends
        self.live_limits = live_limits or LiveLimits()
        self.audio_limits = audio_limits or AudioLimits()
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
        rendered_as = requested_format(
            request.response_format, Rpc.ORCHESTRATE, speakers=request.diarize or request.multichannel
        )
        speaker_counts(_diarize_request(request))  # an impossible count is an error even without diarize
        check_hotwords(request.hotwords)  # refused here, before a diarization starts for nothing
        if request.known_speakers and not request.diarize:
            raise InvalidRequest(
                "known_speakers names the speakers diarization finds: set diarize=true with them",
                reason="INVALID_FIELD",
            )
        if not request.audio.WhichOneof("source"):
            raise InvalidRequest(
                "audio is required: set audio.uri (http/https URL) or audio.content (file bytes)",
                reason="AUDIO_MISSING",
            )
        if request.multichannel:
            return self._orchestrate_channels(request, context, rendered_as)
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

    def _diarize_channels(
        self, request: orchestrator_pb2.OrchestrateRequest, context: CallContext
    ) -> ChannelTurns:
        """Each channel diarized on its own: the channels are decoded here, the other party's
        leaked speech silenced in each, and sent to the diarization backend one by one as FLAC (one after the other: this runs on one of
        the call pool's threads, which must not wait on the pool itself). Fields such as the
        speaker counts (and known speakers) apply to every channel alike."""
        decoded = load_channels(request.audio, self.audio_limits, None, remaining_seconds(context))
        channels = gate_crosstalk([waveform.samples for waveform in decoded])  # else a leak is a speaker
        del decoded
        base = _diarize_request(request)
        results: ChannelTurns = []
        while channels:
            diarize = diarization_pb2.DiarizeRequest()
            diarize.CopyFrom(base)
            flac = encode_flac(Waveform(channels.pop(0)))
            diarize.audio.CopyFrom(audio_pb2.Audio(content=flac, format="flac"))
            results.append(self.backends.diarize(diarize, context))
        return results

    def _orchestrate_channels(
        self,
        request: orchestrator_pb2.OrchestrateRequest,
        context: CallContext,
        rendered_as: audio_pb2.ResponseFormat,
    ) -> orchestrator_pb2.OrchestrateResponse:
        """multichannel: the transcription backend transcribes each channel (words carry channel
        and speaker CHANNEL_n); with diarize, each channel's own diarization names the speakers
        within it (CHANNEL_n/SPEAKER_NN)."""
        diarization: Future[ChannelTurns] | None = None
        if request.diarize:
            diarization = self._pool.submit(
                contextvars.copy_context().run, self._diarize_channels, request, context
            )
        warnings: list[str] = []
        try:
            transcript = self.backends.transcribe(_transcribe_request(request), context)
            per_channel = self._turns(request, diarization, warnings)
        finally:
            if diarization is not None:
                diarization.cancel()
        words = list(transcript.words)
        segments = list(transcript.segments)
        turns: list[audio_pb2.SpeakerTurn] = []
        model = transcript.model
        num_speakers = 0
        if per_channel is not None:
            words, segments, turns = self._speakers_within_channels(words, segments, per_channel)
            model = f"{transcript.model} + {per_channel[0].model}" if per_channel else model
            num_speakers = sum(result.num_speakers for result in per_channel)
        utterances = build_channel_utterances(words, UTTERANCE_PAUSE_S)
        if per_channel is None:
            turns = _utterance_turns(utterances)
            num_speakers = len(speakers_in_order(words))
        with_segments, with_words = requested_detail(request)
        response = orchestrator_pb2.OrchestrateResponse(
            text=transcript.text,
            segments=segments if with_segments else [],
            words=words if with_words else [],
            utterances=utterances,
            speaker_turns=turns,
            num_speakers=num_speakers,
            duration=transcript.duration,
            language=transcript.language,
            model=model,
            response_format=rendered_as,
            document=render_document(rendered_as, segments, turns, words=words),
            speaker_identities=_channel_identities(per_channel or []),
        )
        response.warnings.extend([*transcript.warnings, *warnings])
        return response

    @staticmethod
    def _speakers_within_channels(
        words: Sequence[audio_pb2.Word], segments: Sequence[audio_pb2.Segment], per_channel: ChannelTurns
    ) -> tuple[list[audio_pb2.Word], list[audio_pb2.Segment], list[audio_pb2.SpeakerTurn]]:
        """Each channel's words attributed to the speakers diarized in that channel; a channel
        where none were found keeps CHANNEL_n. Segments are split where the speaker changes."""
        segments_of: dict[int, list[audio_pb2.Segment]] = {}
        for segment in segments:
            segments_of.setdefault(segment.channel, []).append(segment)
        all_words: list[audio_pb2.Word] = []
        all_segments: list[audio_pb2.Segment] = []
        all_turns: list[audio_pb2.SpeakerTurn] = []
        for channel, channel_words in by_channel(words).items():
            found = per_channel[channel].segments if channel < len(per_channel) else []
            turns = _channel_turns(channel, found)
            channel_segments = segments_of.get(channel, [])
            if turns:
                channel_words = assign_speakers(channel_words, turns)
                channel_segments = split_segments_by_speaker(channel_segments, channel_words)
                for segment in channel_segments:
                    segment.channel = channel
            all_words.extend(channel_words)
            all_segments.extend(channel_segments)
        for channel, result in enumerate(per_channel):
            all_turns.extend(_channel_turns(channel, with_overlap(result.segments, result.overlap_segments)))
        merged_words, merged_segments, _ = merge_channels(all_words, all_segments)
        all_turns.sort(key=lambda turn: (turn.start, turn.end, turn.speaker))
        return merged_words, merged_segments, all_turns

    @staticmethod
    def _turns(
        request: orchestrator_pb2.OrchestrateRequest,
        diarization: Future[ResultT] | None,
        warnings: list[str],
    ) -> ResultT | None:
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
        turns: list[audio_pb2.SpeakerTurn] = []
        utterances: list[orchestrator_pb2.Utterance] = []
        model = transcript.model
        if diarization is not None:
            # Words go by the exclusive turns (one speaker at a time); the answer's turns add
            # the overlapped speech of second voices.
            words = assign_speakers(words, diarization.segments)
            turns = with_overlap(diarization.segments, diarization.overlap_segments)
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
            speaker_identities=diarization.speaker_identities if diarization is not None else [],
        )
