"""The TranscriptionService request logic: the one implementation behind gRPC and RunPod."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from parakeet.formats import Rpc
from parakeet.v1 import audio_pb2, transcription_pb2, transcription_pb2_grpc
from parakeet_server.core.audio import AudioLimits, Waveform, load_audio, load_channels
from parakeet_server.core.context import CallContext, remaining_seconds
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed
from parakeet_server.core.fetch import FetchPolicy
from parakeet_server.core.formats import render_document, requested_detail, requested_format
from parakeet_server.core.live import LiveLimits, serve_live
from parakeet_server.core.memory import track_audio
from parakeet_server.core.merge import (
    assign_speakers,
    label_channel,
    merge_channels,
    split_segments_at_pauses,
    split_segments_by_speaker,
)
from parakeet_server.core.metrics import AUDIO_SECONDS
from parakeet_server.core.times import whole_ms
from parakeet_server.transcription.crosstalk import drop_crosstalk
from parakeet_server.transcription.engine import EngineTranscript
from parakeet_server.transcription.hotwords import HotwordSet, check_hotwords
from parakeet_server.transcription.runner import TranscriptionRunner

if TYPE_CHECKING:
    from parakeet_server.core.live import StreamContext
    from parakeet_server.transcription.live import LiveTranscription

MODEL_LANGUAGE = "en"  # parakeet-tdt-0.6b-v2 is English-only
_ENGLISH = {"", "en", "eng", "english"}


def check_language(language: str) -> str:
    """The transcript's language; anything but English is refused rather than silently ignored."""
    code = language.strip().lower()
    if code in _ENGLISH or code.startswith("en-") or code.startswith("en_"):
        return MODEL_LANGUAGE
    raise InvalidRequest(
        f"language {language!r} is not supported: parakeet-tdt-0.6b-v2 transcribes English ('en')",
        reason="INVALID_FIELD",
    )


def check_turns(turns: Sequence[audio_pb2.SpeakerTurn], field: str = "diarization_segments") -> None:
    """Speaker turns must be finite, non-negative, ordered in themselves and labelled."""
    for index, turn in enumerate(turns):
        where = f"{field}[{index}]"
        if not (math.isfinite(turn.start) and math.isfinite(turn.end)):
            raise InvalidRequest(
                f"{where}: start and end must be finite numbers of seconds", reason="INVALID_FIELD"
            )
        if turn.start < 0 or turn.end < turn.start:
            raise InvalidRequest(
                f"{where}: needs 0 <= start <= end (got start={turn.start}, end={turn.end})",
                reason="INVALID_FIELD",
            )
        if not turn.speaker.strip():
            raise InvalidRequest(f"{where}: speaker label is empty", reason="INVALID_FIELD")


def transcript_messages(
    transcript: EngineTranscript, turns: Sequence[audio_pb2.SpeakerTurn] = ()
) -> tuple[list[audio_pb2.Word], list[audio_pb2.Segment]]:
    """The engine's transcript as proto words and segments, attributed to speakers when turns are given.

    Times are the model's own (TDT frames are 80 ms, so a last word may end just past the audio).
    """
    words = [
        audio_pb2.Word(word=w.word, start=w.start, end=w.end, confidence=w.confidence)
        if w.confidence is not None
        else audio_pb2.Word(word=w.word, start=w.start, end=w.end)
        for w in transcript.words
    ]
    segments = [
        audio_pb2.Segment(id=index, start=s.start, end=s.end, text=s.text)
        for index, s in enumerate(transcript.segments)
    ]
    if turns:
        words = assign_speakers(words, turns)
        segments = split_segments_by_speaker(segments, words)
    return words, segments


# With multichannel, a channel's segment is cut where it is silent this long (the other party's turn).
CHANNEL_PAUSE_S = 1.0


def check_multichannel(multichannel: bool, turns: Sequence[audio_pb2.SpeakerTurn]) -> None:
    """Speaker turns name no channel, so they cannot be laid over a multichannel transcript."""
    if multichannel and turns:
        raise InvalidRequest(
            "diarization_segments cannot be combined with multichannel: turns name no channel; "
            "with multichannel each channel is one speaker (CHANNEL_0, CHANNEL_1, ...), or use "
            "OrchestratorService with diarize to find speakers within each channel",
            reason="INVALID_FIELD",
        )


def mono_input_warning(channels: Sequence[Waveform]) -> list[str]:
    """multichannel on a mono recording is not an error (its one channel is CHANNEL_0), but the
    caller should know the option changed nothing."""
    if len(channels) == 1:
        return ["multichannel: the audio has one channel, transcribed as CHANNEL_0"]
    return []


class TranscriptionServicer(transcription_pb2_grpc.TranscriptionServiceServicer):
    """Decodes the audio, runs it through the micro-batched engine, shapes and renders the result."""

    def __init__(
        self,
        runner: TranscriptionRunner,
        limits: AudioLimits | None = None,
        fetch_policy: FetchPolicy | None = None,
        live: LiveTranscription | None = None,
        live_limits: LiveLimits | None = None,
    ) -> None:
        """`live`: the StreamingTranscribe sessions; without it (the orchestrator's in-process
        backend, the RunPod worker, test doubles) that RPC is refused."""
        self.runner = runner
        self.limits = limits or AudioLimits()
        self.fetch_policy = fetch_policy
        self.live = live
        self.live_limits = live_limits or LiveLimits()

    @track_audio  # large requests give their memory back to the system when they end
    def Transcribe(
        self, request: transcription_pb2.TranscribeRequest, context: CallContext
    ) -> transcription_pb2.TranscribeResponse:
        rendered_as = requested_format(request.response_format, Rpc.TRANSCRIBE)
        language = check_language(request.language)
        turns = list(request.diarization_segments)
        check_turns(turns)
        hotwords = check_hotwords(request.hotwords)
        check_multichannel(request.multichannel, turns)
        if request.multichannel:
            return self._transcribe_channels(request, context, rendered_as, language, hotwords)
        waveform = load_audio(request.audio, self.limits, self.fetch_policy, remaining_seconds(context))
        AUDIO_SECONDS.labels("transcription").inc(waveform.duration)
        transcript = self.runner.transcribe(waveform.samples, context, hotwords)
        words, segments = transcript_messages(transcript, turns)
        with_segments, with_words = requested_detail(request)
        return transcription_pb2.TranscribeResponse(
            text=transcript.text,
            segments=segments if with_segments else [],
            words=words if with_words else [],
            duration=whole_ms(waveform.duration),
            language=language,
            model=self.runner.engine.name,
            response_format=rendered_as,
            document=render_document(rendered_as, segments, turns, words=words),
        )

    def _transcribe_channels(
        self,
        request: transcription_pb2.TranscribeRequest,
        context: CallContext,
        rendered_as: audio_pb2.ResponseFormat,
        language: str,
        hotwords: HotwordSet,
    ) -> transcription_pb2.TranscribeResponse:
        """Each channel transcribed on its own (one batched forward pass for all of them), the words
        it only overheard from another channel dropped (crosstalk.py), its words and segments
        labelled with the channel and speaker CHANNEL_n, merged by time."""
        channels = load_channels(request.audio, self.limits, self.fetch_policy, remaining_seconds(context))
        duration = channels[0].duration
        AUDIO_SECONDS.labels("transcription").inc(duration * len(channels))
        warnings = mono_input_warning(channels)
        transcripts = self.runner.transcribe_many(
            [channel.samples for channel in channels], context, hotwords
        )
        samples = [channel.samples for channel in channels]
        del channels
        all_words: list[audio_pb2.Word] = []
        all_segments: list[audio_pb2.Segment] = []
        for channel, transcript in enumerate(transcripts):
            words, segments = drop_crosstalk(channel, *transcript_messages(transcript), samples)
            segments = split_segments_at_pauses(segments, words, CHANNEL_PAUSE_S)
            words, segments = label_channel(channel, words, segments)
            all_words.extend(words)
            all_segments.extend(segments)
        del samples  # hours of samples per channel: not kept while the response is rendered
        words, segments, text = merge_channels(all_words, all_segments)
        with_segments, with_words = requested_detail(request)
        return transcription_pb2.TranscribeResponse(
            text=text,
            segments=segments if with_segments else [],
            words=words if with_words else [],
            duration=whole_ms(duration),
            language=language,
            model=self.runner.engine.name,
            response_format=rendered_as,
            document=render_document(rendered_as, segments, words=words),
            warnings=warnings,
        )

    def StreamingTranscribe(
        self, request_iterator: Iterator[transcription_pb2.StreamingTranscribeRequest], context: StreamContext
    ) -> Iterator[transcription_pb2.StreamingTranscribeResponse]:
        """Live transcription: a config, then audio; interims, finals and speech events as they come."""
        if self.live is None:
            raise PreconditionFailed(
                "streaming is not enabled on this server (TRANSCRIPTION_STREAMING=0, or a transcription "
                "backend inside another service); use Transcribe, or a transcription server with streaming on"
            )
        return serve_live(request_iterator, context, self.live.open_session, self.live_limits)
