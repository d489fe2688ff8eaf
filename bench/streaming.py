"""`make bench` figures 9-11: live streaming on this CPU with the trained tiny TDT.

    python -m bench.run --figures 9,10,11

One in-process stack (the trained tiny TDT's StreamingTranscribe sessions, the offline
diarization backend, an orchestrator over both) served over loopback gRPC; audio is held-out
synthesized conversations (eval/synth.py, seeds from 1000) sent as 16 kHz s16le in 100 ms
messages, the way a microphone client sends it.

9.  accuracy: WER and WDER of the streamed finals against batch Orchestrate on the same audio,
    and the words one has and the other lacks.
10. latency at real-time pace: a 100 ms message every 100 ms of wall clock; the audio's time t
    is at wall clock `sent + t`, so a final's latency is its arrival minus the wall time of the
    end of its last word (and of that word plus the endpoint silence, which the floor is on).
11. capacity: how many real-time streams one process keeps up with.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from bench.common import Row
from eval import synth
from eval.metrics import SpeakerWord, SpeakerWordErrors, WordErrors, speaker_word_errors
from eval.run import FIXTURE_MODEL as TRAINED_MODEL
from parakeet.v1 import (
    audio_pb2,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    streaming_pb2,
    transcription_pb2,
    transcription_pb2_grpc,
)
from parakeet_server.core.grpc_server import HostedService, ServerOptions, ServiceHost
from parakeet_server.diarization import wiring as diarization_wiring
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.server import SERVICE_NAME as ORCHESTRATOR
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription import wiring as transcription_wiring
from parakeet_server.transcription.config import TranscriptionConfig
from parakeet_server.transcription.engine import TranscriptionEngineConfig
from parakeet_server.transcription.server import SERVICE_NAME as TRANSCRIPTION
from parakeet_server.transcription.streaming_config import StreamingConfig
from tests.support.audio import wav_bytes

RATE = 16_000
MESSAGE_S = 0.1  # one audio message: 100 ms, as a microphone client sends it
FIRST_SEED = 1000  # the held-out range; the tiny model trained on synth.sentences(seed=0) only
MARGIN_S = 0.3  # the allowance for compute on this CPU, on top of chunk + right context
CAPACITY_SECONDS = 20.0
CAPACITY_MAX_STREAMS = 16
LAG_ALLOWANCE_S = 1.0  # how far past its structural delay a stream may trail and still keep up
STREAMING = StreamingConfig()  # the server's defaults, which the figures measure
Audio = npt.NDArray[np.float32]


def conversations(count: int) -> list[synth.Conversation]:
    """Held-out conversations, two and three speakers alternating, six turns each."""
    return [
        synth.conversation(seed=FIRST_SEED + index, num_speakers=2 + index % 2, num_turns=6)
        for index in range(count)
    ]


@dataclass
class Stack:
    """The trained tiny TDT and the offline diarization backend behind one loopback gRPC server."""

    host: ServiceHost
    channel: grpc.Channel
    transcription: transcription_pb2_grpc.TranscriptionServiceStub = field(init=False)
    orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.transcription = transcription_pb2_grpc.TranscriptionServiceStub(self.channel)
        self.orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(self.channel)

    @classmethod
    def start(cls) -> Stack:
        transcription = transcription_wiring.build_servicer(
            TranscriptionConfig(
                engine=TranscriptionEngineConfig(model=str(TRAINED_MODEL), device="cpu"), streaming=STREAMING
            )
        )
        transcription_wiring.warm_up(transcription)
        engine = diarization_wiring.engine_for(DiarizationConfig(pipeline="offline", device="cpu"))
        diarization_wiring.warm_up(engine)
        diarization = diarization_wiring.build_servicer(engine, DiarizationConfig().limits)
        orchestrator = OrchestratorServicer(
            InProcessBackends(
                transcription.Transcribe,
                diarization.Diarize,
                lambda: None,
                stream_transcription=transcription.live.open_session if transcription.live else None,
                stream_diarization=diarization.open_session,
            )
        )
        host = ServiceHost(
            [
                HostedService(
                    TRANSCRIPTION,
                    lambda s: transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(
                        transcription, s
                    ),
                ),
                HostedService(
                    ORCHESTRATOR,
                    lambda s: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
                        orchestrator, s
                    ),
                ),
            ],
            ServerOptions(host="127.0.0.1", port=0, grace_s=1.0, max_live_streams=CAPACITY_MAX_STREAMS + 4),
        )
        host.start()
        host.wait_until_warm(600)
        return cls(host, grpc.insecure_channel(host.address))

    def stop(self) -> None:
        self.channel.close()
        self.host.drain(1.0)


def pcm_messages(audio: Audio) -> list[bytes]:
    """The audio as s16le, cut into 100 ms messages."""
    data = (np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes()
    size = round(MESSAGE_S * RATE) * 2
    return [data[start : start + size] for start in range(0, len(data), size)]


@dataclass
class Received:
    """One response and when it arrived (perf_counter), for the latency figures."""

    at: float
    response: Any

    @property
    def kind(self) -> str | None:
        kind: str | None = self.response.WhichOneof("event")
        return kind


@dataclass
class Streamed:
    """A whole stream's responses, with the wall clock time its audio's time 0 stands for."""

    zero: float
    received: list[Received]

    def finals(self) -> list[tuple[float, streaming_pb2.FinalResult]]:
        return [(r.at, r.response.final_result) for r in self.received if r.kind == "final_result"]

    def words(self) -> list[Any]:
        return [word for _, final in self.finals() for word in final.words]

    def final_latencies(self, after_end_s: float = 0.0) -> list[float]:
        """Arrival of each final minus the wall time of its last word's end (+ `after_end_s`)."""
        return [at - (self.zero + final.end + after_end_s) for at, final in self.finals()]

    def first_interims(self) -> list[tuple[float, float]]:
        """Per utterance: when its first interim arrived, and the start that interim gives."""
        firsts = []
        waiting = True
        for item in self.received:
            if item.kind == "interim" and waiting:
                firsts.append((item.at, item.response.interim.start))
                waiting = False
            elif item.kind == "final_result":
                waiting = True
        return firsts

    def first_interim_latencies(self) -> list[float]:
        """Per utterance: arrival of its first interim minus the wall time of its start."""
        return [at - (self.zero + start) for at, start in self.first_interims()]

    def max_lag(self) -> float:
        """Most the server's fed audio trailed the sent audio: (arrival - zero) - processed_seconds.

        processed_seconds counts the audio fed to the decoder, right context included, and the
        audio at time t is sent at zero + t: a stream that keeps up trails by at most the chunk a
        step waits for plus the compute; one that falls behind trails more and more.
        """
        audio_end = max((r.response.processed_seconds for r in self.received), default=0.0)
        return max(
            (
                min(r.at - self.zero, audio_end) - r.response.processed_seconds
                for r in self.received
                if r.kind != "summary"
            ),
            default=0.0,
        )


def paced(
    messages: Sequence[bytes], config: streaming_pb2.StreamingConfig, request: Any, zero: float
) -> Iterator[Any]:
    """The config, then message k once its audio has been "spoken": at zero + (k + 1) * 100 ms."""
    yield request(config=config)
    for index, message in enumerate(messages):
        delay = zero + (index + 1) * MESSAGE_S - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield request(audio=message)


def unpaced(messages: Sequence[bytes], config: streaming_pb2.StreamingConfig, request: Any) -> Iterator[Any]:
    yield request(config=config)
    for message in messages:
        yield request(audio=message)


def stream(
    call: Callable[..., Iterator[Any]],
    request: Any,
    audio: Audio,
    config: streaming_pb2.StreamingConfig,
    real_time: bool,
) -> Streamed:
    """One stream start to summary; with `real_time`, 100 ms of audio every 100 ms of wall clock."""
    messages = pcm_messages(audio)
    zero = time.perf_counter()
    requests = paced(messages, config, request, zero) if real_time else unpaced(messages, config, request)
    received = [Received(time.perf_counter(), response) for response in call(requests, timeout=600)]
    return Streamed(zero, received)


def orchestrate_stream(stack: Stack, audio: Audio, real_time: bool) -> Streamed:
    config = streaming_pb2.StreamingConfig(diarize=True)
    request = orchestrator_pb2.StreamingOrchestrateRequest
    return stream(stack.orchestrator.StreamingOrchestrate, request, audio, config, real_time)


def transcribe_stream(stack: Stack, audio: Audio, real_time: bool) -> Streamed:
    request = transcription_pb2.StreamingTranscribeRequest
    return stream(
        stack.transcription.StreamingTranscribe, request, audio, streaming_pb2.StreamingConfig(), real_time
    )


def batch_words(stack: Stack, audio: Audio) -> list[Any]:
    """Batch Orchestrate's words with their speakers: what the stream is compared with."""
    request = orchestrator_pb2.OrchestrateRequest(
        audio=audio_pb2.Audio(content=wav_bytes(audio)), word_timestamps=True, diarize=True
    )
    return list(stack.orchestrator.Orchestrate(request, timeout=600).words)


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` quantile (0-1) by linear interpolation; nan when there are no values."""
    if not values:
        return float("nan")
    return float(np.quantile(np.asarray(values, dtype=np.float64), share))


def labelled(words: Sequence[Any]) -> list[SpeakerWord]:
    return [SpeakerWord(word.word, word.speaker) for word in words]


def add_wder(total: SpeakerWordErrors, part: SpeakerWordErrors) -> None:
    total.aligned += part.aligned
    total.wrong_speaker += part.wrong_speaker


def accuracy(stack: Stack, talks: Sequence[synth.Conversation]) -> list[Row]:
    """9. Streamed finals against batch Orchestrate, per conversation and pooled."""
    batch_wer, stream_wer, seams = WordErrors(), WordErrors(), WordErrors()
    batch_wder, stream_wder = SpeakerWordErrors(), SpeakerWordErrors()
    per_talk = []
    for talk in talks:
        reference = [SpeakerWord(word, speaker) for word, speaker in talk.words()]
        batch = batch_words(stack, talk.audio)
        streamed = orchestrate_stream(stack, talk.audio, real_time=False).words()
        batch_text = " ".join(word.word for word in batch)
        streamed_text = " ".join(word.word for word in streamed)
        batch_wer.add(talk.transcript(), batch_text)
        stream_wer.add(talk.transcript(), streamed_text)
        seams.add(batch_text, streamed_text)  # batch as the reference: what the stream lost or added
        talk_batch = speaker_word_errors(reference, labelled(batch))
        talk_stream = speaker_word_errors(reference, labelled(streamed))
        add_wder(batch_wder, talk_batch)
        add_wder(stream_wder, talk_stream)
        per_talk.append(
            {
                "uri": talk.uri,
                "speakers": len(talk.voices),
                "seconds": talk.duration,
                "batch_wder": talk_batch.wder,
                "streamed_wder": talk_stream.wder,
                "streamed_speakers": len({word.speaker for word in streamed}),
                "batch_speakers": len({word.speaker for word in batch}),
            }
        )
    detail = {
        "conversations": per_talk,
        "reference_words": batch_wer.reference_words,
        "batch": vars(batch_wer),
        "streamed": vars(stream_wer),
        "stream_vs_batch": vars(seams),
        "batch_wder": vars(batch_wder),
        "streamed_wder": vars(stream_wder),
    }
    name = f"9. {len(talks)} held-out talks"
    batch_wer_pt, stream_wer_pt = batch_wer.wer * 100, stream_wer.wer * 100
    batch_wder_pt, stream_wder_pt = batch_wder.wder * 100, stream_wder.wder * 100
    return [
        Row(f"{name}: batch Orchestrate WER", batch_wer_pt, "%", detail=detail),
        Row(
            f"{name}: streamed finals WER",
            stream_wer_pt,
            "%",
            f"<= {batch_wer_pt + 1:.1f}",
            stream_wer_pt <= batch_wer_pt + 1,
            detail,
        ),
        Row(f"{name}: batch Orchestrate WDER", batch_wder_pt, "%", detail=detail),
        Row(
            f"{name}: streamed finals WDER",
            stream_wder_pt,
            "%",
            f"<= {batch_wder_pt + 3:.1f}",
            stream_wder_pt <= batch_wder_pt + 3,
            detail,
        ),
        Row(f"{name}: batch words the stream lacks", seams.deletions, "words", detail=detail),
        Row(f"{name}: streamed words batch lacks", seams.insertions, "words", detail=detail),
        Row(f"{name}: words substituted", seams.substitutions, "words", detail=detail),
    ]


def nearest(value: float, candidates: Sequence[float], within_s: float = 1.0) -> float | None:
    """The candidate closest to `value`, when one is within `within_s`."""
    best = min(candidates, key=lambda candidate: abs(candidate - value), default=None)
    return best if best is not None and abs(best - value) <= within_s else None


def against_reference(run: Streamed, talk: synth.Conversation) -> tuple[list[float], list[float]]:
    """Final latency after the reference turn end nearest the final's end, and first-interim latency
    after the reference turn start nearest the interim's start: the exact speech bounds, not the
    model's word times (finals or turns with no reference bound within 1 s are left out)."""
    ends = [turn.end for turn in talk.turns]
    starts = [turn.start for turn in talk.turns]
    finals = []
    for at, final in run.finals():
        end = nearest(final.end, ends)
        if end is not None:
            finals.append(at - (run.zero + end))
    interims = []
    for at, start in run.first_interims():
        reference = nearest(start, starts)
        if reference is not None:
            interims.append(at - (run.zero + reference))
    return finals, interims


def latency_rows(
    label: str, runs: Sequence[tuple[Streamed, synth.Conversation]], floor_s: float | None
) -> list[Row]:
    """p50/p95 of final and first-interim latency over `runs`; the floor, when given, is on the
    p50 of the final's arrival after the endpoint silence that follows its last word."""
    silence_s = STREAMING.endpoint_silence_ms / 1000
    referenced = [against_reference(run, talk) for run, talk in runs]
    series = {
        "final - endpoint silence end": [x for run, _ in runs for x in run.final_latencies(silence_s)],
        "final - last word end": [x for run, _ in runs for x in run.final_latencies()],
        "final - ref. turn end": [x for finals, _ in referenced for x in finals],
        "1st interim - speech start": [x for run, _ in runs for x in run.first_interim_latencies()],
        "1st interim - ref. turn start": [x for _, interims in referenced for x in interims],
    }
    detail: dict[str, Any] = {
        "finals": sum(len(run.finals()) for run, _ in runs),
        "chunk_s": STREAMING.chunk_s,
        "right_context_s": STREAMING.right_context_s,
        "endpoint_silence_s": silence_s,
        **{
            name.replace(" - ", "_after_").replace(" ", "_").replace(".", "") + "_s": values
            for name, values in series.items()
        },
    }
    rows = []
    for name, values in series.items():
        for share in (0.5, 0.95):
            value = percentile(values, share)
            floored = floor_s is not None and share == 0.5 and name == "final - endpoint silence end"
            rows.append(
                Row(
                    f"10. {label}: {name}, p{round(share * 100)}",
                    value,
                    "s",
                    f"<= {floor_s:.2f}" if floored and floor_s is not None else "",
                    value <= floor_s if floored and floor_s is not None else None,
                    detail,
                )
            )
    return rows


def latency(stack: Stack, talks: Sequence[synth.Conversation]) -> list[Row]:
    """10. Real-time pace, one stream at a time: StreamingTranscribe alone (the floor), then
    StreamingOrchestrate with diarization (a final also waits for its speakers: no floor)."""
    floor_s = STREAMING.chunk_s + STREAMING.right_context_s + MARGIN_S
    transcribed = [transcribe_stream(stack, talk.audio, real_time=True) for talk in talks]
    orchestrated = [orchestrate_stream(stack, talk.audio, real_time=True) for talk in talks]
    return latency_rows("Transcribe", list(zip(transcribed, talks, strict=True)), floor_s) + (
        latency_rows("Orchestrate+diarize", list(zip(orchestrated, talks, strict=True)), None)
    )


def looped(talks: Sequence[synth.Conversation], seconds: float) -> Audio:
    """`seconds` of conversation audio, the conversations one after another."""
    audio = np.concatenate([talk.audio for talk in talks])
    repeats = int(np.ceil(seconds * RATE / len(audio)))
    return np.tile(audio, repeats)[: round(seconds * RATE)]


@dataclass
class CapacityRun:
    """N concurrent real-time streams: each one's worst lag and final latencies, and the CPU used."""

    streams: int
    lags: list[float]
    final_latencies: list[float]
    cpu_s: float
    audio_s: float

    @property
    def rtf_per_stream(self) -> float:
        """This process's CPU seconds per audio second per stream (server and the light clients)."""
        return self.cpu_s / (self.audio_s * self.streams)

    def keeps_up(self, lag_bound_s: float, latency_bound_s: float) -> bool:
        return max(self.lags) <= lag_bound_s and percentile(self.final_latencies, 0.95) <= latency_bound_s


def concurrent_streams(stack: Stack, audio: Audio, count: int) -> CapacityRun:
    """`count` StreamingTranscribe streams of `audio` at real-time pace, started together."""
    results: list[Streamed | BaseException] = [RuntimeError("not run")] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = transcribe_stream(stack, audio, real_time=True)
        except BaseException as error:  # reported below, after every stream ended
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    cpu = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu_s = time.process_time() - cpu
    runs = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        runs.append(result)
    return CapacityRun(
        count,
        [run.max_lag() for run in runs],
        [x for run in runs for x in run.final_latencies()],
        cpu_s,
        len(audio) / RATE,
    )


def capacity(stack: Stack, talks: Sequence[synth.Conversation]) -> list[Row]:
    """11. The most real-time StreamingTranscribe streams this process keeps up with: N = 1, 2, 4, ...
    until one stream's fed audio trails the sent audio by more than a chunk + 1 s (a step waits for a
    whole chunk), or the p95 of final after last word passes chunk + right context + endpoint
    silence + 1 s."""
    lag_bound = STREAMING.chunk_s + LAG_ALLOWANCE_S
    latency_bound = (
        STREAMING.chunk_s + STREAMING.right_context_s + STREAMING.endpoint_silence_ms / 1000 + LAG_ALLOWANCE_S
    )
    audio = looped(talks, CAPACITY_SECONDS)
    rows = []
    sustained = 0
    count = 1
    runs = []
    while count <= CAPACITY_MAX_STREAMS:
        result = concurrent_streams(stack, audio, count)
        ok = result.keeps_up(lag_bound, latency_bound)
        runs.append({**vars(result), "keeps_up": ok, "rtf_per_stream": result.rtf_per_stream})
        rows.append(
            Row(
                f"11. {count} stream(s): CPU s per audio s per stream",
                result.rtf_per_stream,
                "RTF",
                detail={
                    "max_lag_s": max(result.lags),
                    "final_p95_s": percentile(result.final_latencies, 0.95),
                },
            )
        )
        if not ok:
            break
        sustained = count
        count *= 2
    detail = {
        "capped": sustained == CAPACITY_MAX_STREAMS,  # every N tried kept up: a lower bound
        "runs": runs,
        "lag_bound_s": lag_bound,
        "latency_bound_s": latency_bound,
        "seconds": CAPACITY_SECONDS,
    }
    rows.insert(
        0,
        Row(
            f"11. real-time streams sustained ({CAPACITY_SECONDS:g} s each)",
            sustained,
            "streams",
            ">= 1",
            sustained >= 1,
            detail,
        ),
    )
    return rows


STREAMING_FIGURES = {9, 10, 11}


def figures(chosen: set[int], count: int = 6, paced_count: int = 3) -> list[Row]:
    """The chosen streaming figures, on one stack; `count` conversations for accuracy, the first
    `paced_count` of them for latency and capacity (real time costs their length in wall clock)."""
    talks = conversations(count)
    stack = Stack.start()
    rows: list[Row] = []
    try:
        if 9 in chosen:
            rows += accuracy(stack, talks)
        if 10 in chosen:
            rows += latency(stack, talks[:paced_count])
        if 11 in chosen:
            rows += capacity(stack, talks[:paced_count])
    finally:
        stack.stop()
    return rows
