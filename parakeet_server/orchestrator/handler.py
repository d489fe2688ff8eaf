"""RunPod serverless worker for the orchestrator and single-endpoint architectures.

ORCHESTRATOR_BACKEND=runpod (the default here; the CPU orchestrator worker) calls the two split
endpoints named by TRANSCRIPTION_ENDPOINT_ID and DIARIZATION_ENDPOINT_ID with RUNPOD_API_KEY;
ORCHESTRATOR_BACKEND=inprocess (the single endpoint) loads both models in this worker, configured
by the transcription and diarization workers' variables. Either way the job input is the
existing `{"input": {"audio": ..., "diarize": true, "response_format": "json"}}`; enroll jobs,
`{"input": {"task": "enroll", "audio": ..., "name": "Alice"}}`, are answered with the voiceprint of
the diarization backend's engine (in process, or an enroll job on the diarization endpoint). Run
`python -m parakeet_server.orchestrator.handler`; add `--rp_serve_api --rp_api_port N` for the
runpod SDK's local test API.

RUNPOD_STREAM=1 makes the worker a streaming one (the SDK takes a handler as a generator or as a
plain function for the worker's whole life, so this is a worker setting, not a job field): the
same input, the recording fed through StreamingOrchestrate as fast as it is consumed, each
speaker-attributed final a partial on `/stream/{job_id}` as soon as it is decided
(`{"type": "final", "text", "start", "end", "speaker", "words", "utterance_index"}`), and last
`{"type": "response", ...}`: the whole response in today's JSON, built from those finals. `/runsync`
answers the list of partials; `parakeet.runpod` reads its last item. It needs backends that stream
(inprocess or grpc) and loads the streaming model; without RUNPOD_STREAM the worker answers
exactly as before.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import replace
from typing import Any

from parakeet.client import streaming_config
from parakeet.formats import Rpc
from parakeet.runpod import ENROLL_TASK, response_to_json
from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, streaming_pb2
from parakeet_server.core.audio import AudioLimits, load_audio
from parakeet_server.core.context import CallContext
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed
from parakeet_server.core.formats import render_document, requested_detail, requested_format
from parakeet_server.core.live import Samples
from parakeet_server.core.merge import build_utterances
from parakeet_server.core.runpod_shim import (
    DEFAULT_TASK,
    JobStream,
    Task,
    Tasks,
    enroll_task,
    output_with_warnings,
    run_stream_worker,
    run_tasks_worker,
    run_worker,
)
from parakeet_server.core.settings import Env, worker_config
from parakeet_server.core.times import whole_ms
from parakeet_server.diarization.servicer import speaker_counts
from parakeet_server.orchestrator.config import OrchestratorConfig
from parakeet_server.orchestrator.servicer import UTTERANCE_PAUSE_S, OrchestratorServicer
from parakeet_server.orchestrator.wiring import build_servicer
from parakeet_server.transcription.config import switch
from parakeet_server.transcription.servicer import check_language

Orchestrate = Callable[
    [orchestrator_pb2.OrchestrateRequest, CallContext], orchestrator_pb2.OrchestrateResponse
]
STREAM_ENV = "RUNPOD_STREAM"
# The decoded recording goes to the live session in pieces this long (16 kHz f32le).
CHUNK_SECONDS = 1.0
_RATE = 16_000
_F32LE_16K = streaming_pb2.StreamingAudioFormat(
    encoding=streaming_pb2.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=_RATE, channels=1
)


def _batch_servicer(config: OrchestratorConfig) -> OrchestratorServicer:
    """The servicer the config describes, its backends warmed up; in process without the
    streaming model (a RunPod job is a whole recording, so a second model copy would only cost
    memory)."""
    transcription = replace(config.transcription, streaming_enabled=False)
    servicer = build_servicer(replace(config, transcription=transcription))
    servicer.backends.warm_up()
    return servicer


def prepare(config: OrchestratorConfig) -> Orchestrate:
    """The Orchestrate jobs of `_batch_servicer`."""
    return _batch_servicer(config).Orchestrate


def prepare_tasks(config: OrchestratorConfig) -> Tasks:
    """The worker's jobs: Orchestrate (no `task`) and enroll, made by the diarization backend's
    engine (in process on the single endpoint, an enroll job on the diarization endpoint from the
    orchestrator), so the voiceprint matches in this worker's jobs."""
    servicer = _batch_servicer(config)
    return {
        DEFAULT_TASK: Task(orchestrator_pb2.OrchestrateRequest, servicer.Orchestrate),
        ENROLL_TASK: enroll_task(servicer.backends.enroll),
    }


TASKS = {DEFAULT_TASK: orchestrator_pb2.OrchestrateRequest, ENROLL_TASK: diarization_pb2.EnrollRequest}


def prepare_stream(config: OrchestratorConfig) -> JobStream[orchestrator_pb2.OrchestrateRequest]:
    """The streaming worker's jobs: the servicer with the streaming model loaded and warmed up."""
    if config.backend == "runpod":
        raise PreconditionFailed(
            f"{STREAM_ENV}=1 needs backends that stream, and RunPod endpoints answer whole jobs: set "
            "ORCHESTRATOR_BACKEND=inprocess (the single endpoint) or grpc, or unset RUNPOD_STREAM"
        )
    transcription = replace(config.transcription, streaming_enabled=True)
    servicer = build_servicer(replace(config, transcription=transcription))
    servicer.backends.warm_up()
    return functools.partial(stream_orchestrate, servicer, config.transcription.limits)


def stream_mode(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether RUNPOD_STREAM asks for a streaming worker (1/true/yes/on)."""
    return Env(environ).get(STREAM_ENV, False, switch)


# -- a streaming job ---------------------------------------------------------------------------


class _JobCall:
    """What serve_live asks of a gRPC call; the job closing the response generator cancels it."""

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return True

    def is_active(self) -> bool:
        return True


def _streaming_config(request: orchestrator_pb2.OrchestrateRequest) -> streaming_pb2.StreamingConfig:
    """The live stream a job asks for: its language, speakers, hotwords and known speakers (all
    applied, or refused with a reason by the live session: none dropped), finals only, words
    always (the partials carry them; the response keeps them only if asked)."""
    return streaming_config(
        _F32LE_16K,
        language=request.language,
        interim_results=False,
        diarize=request.diarize,
        speakers_optional=request.speakers_optional,
        num_speakers=request.num_speakers if request.HasField("num_speakers") else None,
        min_speakers=request.min_speakers if request.HasField("min_speakers") else None,
        max_speakers=request.max_speakers if request.HasField("max_speakers") else None,
        hotwords=request.hotwords,
        known_speakers=request.known_speakers,
        speaker_match_threshold=(
            request.speaker_match_threshold if request.HasField("speaker_match_threshold") else None
        ),
    )


def _audio_messages(
    config: streaming_pb2.StreamingConfig, samples: Samples, stopped: threading.Event
) -> Iterator[orchestrator_pb2.StreamingOrchestrateRequest]:
    """The config, then the recording in CHUNK_SECONDS pieces, pulled as the session takes them."""
    yield orchestrator_pb2.StreamingOrchestrateRequest(config=config)
    step = int(CHUNK_SECONDS * _RATE)
    for start in range(0, len(samples), step):
        if stopped.is_set():
            return
        piece = samples[start : start + step].astype("<f4", copy=False).tobytes()
        yield orchestrator_pb2.StreamingOrchestrateRequest(audio=piece)


def stream_orchestrate(
    servicer: OrchestratorServicer,
    limits: AudioLimits,
    request: orchestrator_pb2.OrchestrateRequest,
    warnings: list[str],
) -> Iterator[dict[str, Any]]:
    """One job through StreamingOrchestrate: a partial per final, then the whole response.

    The request is checked as Orchestrate checks it (format, speaker counts, audio) and the audio
    decoded with the batch path's limits, so a job is refused for the same reasons either way."""
    rendered_as = requested_format(request.response_format, Rpc.ORCHESTRATE, speakers=request.diarize)
    if request.multichannel:
        raise InvalidRequest(
            f"multichannel is not streamed: unset {STREAM_ENV} on this worker (or send the job to a "
            "batch worker) to keep the channels apart",
            reason="INVALID_FIELD",
        )
    config = _streaming_config(request)
    speaker_counts(config)
    waveform = load_audio(request.audio, limits)
    stopped = threading.Event()
    finals: list[streaming_pb2.FinalResult] = []
    summary = streaming_pb2.StreamingSummary(duration=waveform.duration)
    responses = servicer.StreamingOrchestrate(_audio_messages(config, waveform.samples, stopped), _JobCall())
    try:
        for response in responses:
            event = response.WhichOneof("event")
            if event == "final_result":
                finals.append(response.final_result)
                yield {"type": "final", **response_to_json(response.final_result)}
            elif event == "summary":
                summary = response.summary
    finally:
        stopped.set()
        if isinstance(responses, Generator):  # serve_live's: closing it cancels the live session
            responses.close()
    whole = response_of(request, finals, summary, rendered_as)
    yield {"type": "response", **output_with_warnings(whole, warnings)}


def _turns(finals: list[streaming_pb2.FinalResult]) -> list[audio_pb2.SpeakerTurn]:
    """Speaker turns as the finals show them: consecutive finals of one speaker joined."""
    turns: list[audio_pb2.SpeakerTurn] = []
    for final in finals:
        if not final.speaker:
            continue
        if turns and turns[-1].speaker == final.speaker:
            turns[-1].end = whole_ms(final.end)
        else:
            turns.append(
                audio_pb2.SpeakerTurn(
                    start=whole_ms(final.start), end=whole_ms(final.end), speaker=final.speaker
                )
            )
    return turns


def response_of(
    request: orchestrator_pb2.OrchestrateRequest,
    finals: list[streaming_pb2.FinalResult],
    summary: streaming_pb2.StreamingSummary,
    rendered_as: audio_pb2.ResponseFormat,
) -> orchestrator_pb2.OrchestrateResponse:
    """The streamed finals as the OrchestrateResponse a batch job answers: one segment per final,
    the same detail rules (`requested_detail`), utterances and turns when diarizing."""
    words = [word for final in finals for word in final.words]
    segments = [
        audio_pb2.Segment(
            id=index,
            start=whole_ms(final.start),
            end=whole_ms(final.end),
            text=final.text,
            speaker=final.speaker,
        )
        for index, final in enumerate(finals)
    ]
    turns = _turns(finals) if request.diarize else []
    with_segments, with_words = requested_detail(request)
    return orchestrator_pb2.OrchestrateResponse(
        text=" ".join(final.text for final in finals if final.text),
        segments=segments if with_segments else [],
        words=words if with_words else [],
        utterances=build_utterances(words, UTTERANCE_PAUSE_S) if request.diarize else [],
        speaker_turns=turns,
        num_speakers=summary.num_speakers if request.diarize else 0,
        duration=summary.duration,
        language=check_language(request.language),
        model=summary.model,
        response_format=rendered_as,
        document=render_document(rendered_as, segments, turns, words=words),
        warnings=list(summary.warnings),
        speaker_identities=summary.speaker_identities if request.diarize else [],
    )


def main() -> None:
    def config() -> OrchestratorConfig:
        return worker_config(lambda: OrchestratorConfig.from_env(backend="runpod"))

    try:
        streaming = stream_mode()
    except ValueError as error:  # a bad RUNPOD_STREAM: every job is told, as for other settings
        message = f"the worker is misconfigured: {error}"
        run_worker(orchestrator_pb2.OrchestrateRequest, lambda: _refuse(message))
        return
    if streaming:
        run_stream_worker(orchestrator_pb2.OrchestrateRequest, lambda: prepare_stream(config()))
    else:
        run_tasks_worker(TASKS, lambda: prepare_tasks(config()))


def _refuse(message: str) -> Orchestrate:
    raise PreconditionFailed(message)


if __name__ == "__main__":
    main()
