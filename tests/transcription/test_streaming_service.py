"""StreamingTranscribe: live sessions on one driver thread, and the RPC over real gRPC.

The sessions run on the trained tiny TDT with espeak speech (eval/synth.py), so the words are
real: a stream's finals must be the batch engine's transcript of the same audio, whatever the
options, the streams sharing the driver's passes, the audio's pace or the streams cancelled.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from eval import synth
from eval.metrics import WordErrors
from parakeet.errors import reason_of
from parakeet.v1 import streaming_pb2, transcription_pb2, transcription_pb2_grpc
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed, ServiceError
from parakeet_server.core.live import LiveLimits
from parakeet_server.core.settings import ConfigError
from parakeet_server.transcription import wiring
from parakeet_server.transcription.config import TranscriptionConfig
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.live import LiveTranscription
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.server import hosted_service
from parakeet_server.transcription.servicer import TranscriptionServicer
from parakeet_server.transcription.streaming import StepReport, StreamingTranscriber
from parakeet_server.transcription.streaming_config import StreamingConfig
from tests.support.servers import REPO_ROOT, wait_for_health

MODEL = REPO_ROOT / "eval" / "assets" / "tiny_tdt_espeak.nemo"
RATE = 16_000
FEED = RATE // 10  # 100 ms packets, as a live client sends them
SERVICE = "parakeet.v1.TranscriptionService"
Config = streaming_pb2.StreamingConfig
STARTED = streaming_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED

# Voices 1-3 read them as the batch engine does, alone and together (the tiny model's word
# choice depends on context: voice 0 reads "good orange" alone).
TEXTS = [
    "good morning please call back tomorrow",
    "hello teacher thank you",
    "yes please open the kitchen window",
]


def needs_model(test: Any) -> Any:
    """The trained tiny TDT and espeak speech: slow, and skipped where espeak-ng is missing."""
    return pytest.mark.slow(pytest.mark.espeak(test))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.float32)


@pytest.fixture(scope="module")
def transcriber() -> StreamingTranscriber:
    return StreamingTranscriber(MODEL, StreamingConfig(), device="cpu")


@pytest.fixture(scope="module")
def live(transcriber: StreamingTranscriber) -> Iterator[LiveTranscription]:
    live = LiveTranscription.over(transcriber, "tiny_tdt_espeak.nemo")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def batch_engine() -> TranscriptionEngine:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(MODEL), device="cpu"))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    """Three utterances by three voices."""
    return [synth.synthesize(text, synth.VOICES[i + 1]) for i, text in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def recording(speech: list[np.ndarray]) -> np.ndarray:
    """The utterances 0.8 s apart (an endpoint after each at the 400 ms default)."""
    return np.concatenate([part for utterance in speech for part in (utterance, silence(0.8))])


class Recorder:
    """A session's output: every response, and how the stream ended."""

    def __init__(self) -> None:
        self.responses: list[transcription_pb2.StreamingTranscribeResponse] = []
        self.error: ServiceError | None = None
        self.ended = threading.Event()
        self.ends = 0

    def send(self, response: transcription_pb2.StreamingTranscribeResponse) -> None:
        assert not self.ended.is_set(), "a response after the end"
        self.responses.append(response)

    def end(self, error: ServiceError | None = None) -> None:
        self.error = error
        self.ends += 1
        self.ended.set()

    def of(self, kind: str) -> list[Any]:
        return [getattr(r, kind) for r in self.responses if r.WhichOneof("event") == kind]

    @property
    def words(self) -> list[str]:
        return [w.word for final in self.of("final_result") for w in final.words]

    @property
    def final_text(self) -> list[str]:
        return " ".join(final.text for final in self.of("final_result")).split()


def run(live: LiveTranscription, audio: np.ndarray, config: Config | None = None) -> Recorder:
    """One session: `audio` in 100 ms packets as fast as the session takes them, then finish."""
    output = Recorder()
    session = live.open_session(config or Config(), output)
    for start in range(0, len(audio), FEED):
        session.feed(audio[start : start + FEED])
    session.finish()
    assert output.ended.is_set() and output.ends == 1
    return output


@pytest.fixture
def steps(transcriber: StreamingTranscriber, monkeypatch: pytest.MonkeyPatch) -> list[StepReport]:
    """The reports of the driver's steps while the test runs (observed, not changed)."""
    reports: list[StepReport] = []
    step = transcriber.step

    def observed() -> StepReport:
        report = step()
        reports.append(report)
        return report

    monkeypatch.setattr(transcriber, "step", observed)
    return reports


@needs_model
def test_finals_are_the_batch_transcript_then_a_summary(live, batch_engine, recording) -> None:
    output = run(live, recording)
    assert output.error is None
    batch = batch_engine.transcribe([recording])[0]
    assert output.words == batch.text.split() == output.final_text
    finals = output.of("final_result")
    assert len(finals) >= 3 and [f.utterance_index for f in finals] == list(range(len(finals)))
    for final in finals:
        assert final.start == final.words[0].start and final.end == final.words[-1].end
        assert all(0.0 <= w.confidence <= 1.0 for w in final.words)
    words = [w for f in finals for w in f.words]
    # Times as the batch engine's, within two 80 ms encoder frames (a window's edge moves a
    # word's last frame).
    drift = [max(abs(w.start - b.start), abs(w.end - b.end)) for w, b in zip(words, batch.words, strict=True)]
    assert max(drift) <= 0.16 + 1e-9
    # The summary comes last, once; every response says how far decoding got, never backwards.
    last = output.responses[-1]
    assert last.WhichOneof("event") == "summary" and len(output.of("summary")) == 1
    duration = round(len(recording) / RATE, 3)
    assert last.summary == streaming_pb2.StreamingSummary(
        duration=duration, model="tiny_tdt_espeak.nemo", num_finals=len(finals)
    )
    processed = [r.processed_seconds for r in output.responses]
    assert processed == sorted(processed) and processed[0] > 0 and processed[-1] == duration
    assert live.open_sessions == 0 and live.transcriber.open_streams == 0


@needs_model
def test_speech_events_frame_each_utterance(live, recording) -> None:
    output = run(live, recording)
    kinds = []
    for response in output.responses:
        kind = response.WhichOneof("event")
        kinds.append(
            streaming_pb2.SpeechEventType.Name(response.speech_event.type) if kind == "speech_event" else kind
        )
    # Per utterance: SPEECH_STARTED, interims (if any), the final, END_OF_UTTERANCE; progress
    # responses (None) anywhere; the summary last.
    utterances = [k for k in kinds if k is not None and k != "interim"]
    count = len(output.of("final_result"))
    assert count >= 3
    assert utterances == [
        "SPEECH_EVENT_TYPE_SPEECH_STARTED",
        "final_result",
        "SPEECH_EVENT_TYPE_END_OF_UTTERANCE",
    ] * count + ["summary"]
    assert "interim" in kinds
    for index, kind in enumerate(kinds):
        if kind == "interim":  # inside an utterance: after its start, before its final
            before = [k for k in kinds[:index] if k not in (None, "interim")]
            assert before[-1] == "SPEECH_EVENT_TYPE_SPEECH_STARTED"
    # Times: an utterance starts where its interims say it does, near its first word, and ends
    # at its last word; events read in time order.
    finals = iter(output.of("final_result"))
    started = None
    for response in output.responses:
        kind = response.WhichOneof("event")
        if kind == "speech_event" and response.speech_event.type == STARTED:
            started = response.speech_event.time
        elif kind == "interim":
            assert response.interim.start == started
        elif kind == "final_result":
            final = next(finals)
            assert started is not None and abs(final.start - started) <= 0.16
        elif kind == "speech_event":
            assert response.speech_event.time == final.end
    times = [r.speech_event.time for r in output.responses if r.WhichOneof("event") == "speech_event"]
    assert times == sorted(times)


@needs_model
def test_without_interims_or_word_timestamps(live, recording) -> None:
    output = run(live, recording, Config(interim_results=False, word_timestamps=False))
    assert output.of("interim") == []
    finals = output.of("final_result")
    full = run(live, recording)
    assert len(finals) == len(full.of("final_result")) and all(len(f.words) == 0 for f in finals)
    assert all(f.text and 0 <= f.start < f.end for f in finals)
    assert output.final_text == full.words
    assert [(f.start, f.end) for f in finals] == [(f.start, f.end) for f in full.of("final_result")]


@needs_model
def test_endpoint_silence_is_per_stream(live, speech) -> None:
    """A 0.8 s pause ends an utterance at the 400 ms default but not with 1200 ms of endpoint silence."""
    audio = np.concatenate([speech[1], silence(0.8), speech[2], silence(1.6)])
    default = run(live, audio)
    patient = run(live, audio, Config(endpoint_silence_ms=1200))
    assert [f.text for f in default.of("final_result")] == [TEXTS[1], TEXTS[2]]
    assert [f.text for f in patient.of("final_result")] == [f"{TEXTS[1]} {TEXTS[2]}"]


@needs_model
def test_concurrent_streams_share_passes_and_keep_their_words(live, batch_engine, speech, steps) -> None:
    audios = [np.concatenate([s, silence(0.8)]) for s in speech]
    outputs = [Recorder() for _ in audios]
    sessions = [live.open_session(Config(), output) for output in outputs]
    # A second at a time, the streams in turn: each has audio waiting whenever the driver steps
    # (fed one whole stream after the other, the driver could finish the first before the second came).
    for offset in range(0, max(audio.size for audio in audios), RATE):
        for session, audio in zip(sessions, audios, strict=True):
            if offset < audio.size:
                session.feed(audio[offset : offset + RATE])
    for session in sessions:
        session.finish()
    assert max(size for report in steps for size in report.batch_sizes) > 1
    for output, audio in zip(outputs, audios, strict=True):
        assert output.error is None
        assert output.words == batch_engine.transcribe([audio])[0].text.split()


@needs_model
def test_audio_faster_than_real_time_waits_for_decoding(
    live, transcriber, batch_engine, speech, steps
) -> None:
    """60 s sent at once is taken as the driver decodes it, holding at most ~10 s undecoded."""
    script = " ".join(TEXTS * 3)
    audio = np.concatenate([part for s in speech * 3 for part in (s, silence(0.8))])
    audio = np.concatenate([audio, silence(60.0 - len(audio) / RATE)])
    output = Recorder()
    session = live.open_session(Config(), output)
    session.feed(audio)  # returns once the stream's backlog is down to the limit
    assert transcriber.pending_samples(session.stream) <= live.max_buffered_s * RATE
    decoded = sum(session.stream in report.positions for report in steps)
    assert decoded >= (60.0 - live.max_buffered_s) / transcriber.config.chunk_s - 1
    # Packets: the backlog never passes the limit by more than one packet.
    backlog = []
    second = live.open_session(Config(), Recorder())
    for start in range(0, len(audio), FEED):
        second.feed(audio[start : start + FEED])
        backlog.append(transcriber.pending_samples(second.stream))
    assert max(backlog) <= live.max_buffered_s * RATE + FEED
    second.cancel()
    session.finish()
    errors = WordErrors()
    errors.add(script, " ".join(output.words))  # none lost to the wait: what the model hears
    assert errors.wer <= 0.1 and output.responses[-1].summary.duration == 60.0


@needs_model
def test_cancel_releases_a_feed_waiting_for_the_driver(live, transcriber) -> None:
    session = live.open_session(Config(), Recorder())
    feeder = threading.Thread(target=session.feed, args=(silence(120.0),))
    feeder.start()
    time.sleep(0.5)
    assert feeder.is_alive()  # held by back-pressure
    session.cancel()
    feeder.join(2.0)
    assert not feeder.is_alive()
    session.cancel()  # idempotent
    session.feed(silence(1.0))  # ignored after cancel
    assert transcriber.open_streams == 0


@needs_model
def test_cancelled_streams_leave_nothing_behind(live, transcriber) -> None:
    """1000 cancelled streams (some mid-decoding): no stream, state, thread or memory left."""

    def cancel_streams(count: int) -> None:
        for index in range(count):
            output = Recorder()
            session = live.open_session(Config(), output)
            if index % 50 == 0:  # decoding started: NeMo holds state for it
                session.feed(silence(1.0))
                deadline = time.monotonic() + 10
                while not output.responses and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert output.responses
            else:
                session.feed(silence(0.5))
            session.cancel()

    cancel_streams(100)  # allocations that stay (caches, the first stream's) come first
    threads = set(threading.enumerate())  # earlier tests' daemon threads may end meanwhile
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cancel_streams(1000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert transcriber.open_streams == 0 and live.open_sessions == 0
    assert len(transcriber._pipeline._state_pool) == 0
    assert set(threading.enumerate()) - threads == set(), "no thread started by the streams is left"
    assert grown < 1_000_000, f"{grown} bytes kept after 1000 cancelled streams"


@needs_model
def test_a_failed_pass_fails_its_streams_and_the_driver_goes_on(
    live, transcriber, speech, monkeypatch
) -> None:
    pipeline = transcriber._pipeline
    real = pipeline.transcribe_step

    def broken(frames: Any) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(pipeline, "transcribe_step", broken)
    output = Recorder()
    session = live.open_session(Config(), output)
    session.feed(speech[0])
    assert output.ended.wait(10)
    assert output.error is not None and output.error.reason == "INTERNAL"
    assert "RuntimeError" in output.error.message and "illegal" not in output.error.message
    assert transcriber.open_streams == 0
    session.finish()  # after the failure: nothing more is sent
    assert output.ends == 1
    # A flush that fails ends its stream the same way and leaves no NeMo state behind.
    flushed = Recorder()
    session = live.open_session(Config(), flushed)
    session.feed(speech[1][: RATE // 2])  # under a chunk: only the flush decodes it
    session.finish()
    assert flushed.error is not None and flushed.error.reason == "INTERNAL"
    assert flushed.ends == 1 and not flushed.of("summary")
    assert transcriber.open_streams == 0 and len(pipeline._state_pool) == 0
    monkeypatch.setattr(pipeline, "transcribe_step", real)
    assert run(live, speech[1]).words == ["hello", "teacher", "thank", "you"]


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (Config(diarize=True), "diarize: StreamingTranscribe does not diarize; use OrchestratorService."),
        (Config(num_speakers=2), "num_speakers: StreamingTranscribe does not diarize"),
        (Config(max_speakers=3), "max_speakers: StreamingTranscribe does not diarize"),
        (Config(language="de"), "language 'de' is not supported"),
        (
            Config(endpoint_silence_ms=80),
            "endpoint_silence_ms: must be 0 (the server's default) or at least 160",
        ),
        (Config(endpoint_silence_ms=-1), "endpoint_silence_ms: must be 0"),
    ],
)
@needs_model
def test_config_refusals(live, transcriber, config: Config, says: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        live.open_session(config, Recorder())
    assert refused.value.reason == "INVALID_FIELD"
    assert says in refused.value.message
    assert transcriber.open_streams == 0


@needs_model
def test_languages_and_endpoints_accepted(live) -> None:
    for config in (Config(language="en-GB"), Config(endpoint_silence_ms=160)):
        session = live.open_session(config, Recorder())
        session.cancel()


def test_streaming_off_is_refused_by_the_servicer() -> None:
    servicer = wiring.build_servicer(TranscriptionConfig(streaming_enabled=False))
    assert servicer.live is None
    with pytest.raises(PreconditionFailed) as refused:
        servicer.StreamingTranscribe(iter([]), None)  # type: ignore[arg-type]
    assert refused.value.reason == "FAILED_PRECONDITION"
    assert "streaming is not enabled on this server (TRANSCRIPTION_STREAMING=0" in refused.value.message
    servicer.runner.close()


def test_streaming_is_built_on_by_default_and_loaded_at_warm_up_only() -> None:
    config = TranscriptionConfig(engine=TranscriptionEngineConfig(model=str(MODEL)))
    servicer = wiring.build_servicer(config)
    assert servicer.live is not None and not servicer.live.loaded  # nothing loaded at build time
    assert servicer.live.model == "tiny_tdt_espeak.nemo"
    assert servicer.live_limits == LiveLimits()
    servicer.runner.close()


@pytest.mark.slow
def test_sizes_off_the_model_frame_grid_fail_the_warm_up_naming_the_variable() -> None:
    config = TranscriptionConfig(
        engine=TranscriptionEngineConfig(model=str(MODEL), device="cpu"),
        streaming=StreamingConfig(chunk_s=0.56),  # 7.000000000000001 frames of 80 ms
    )
    servicer = wiring.build_servicer(config)
    assert servicer.live is not None
    with pytest.raises(PreconditionFailed) as refused:
        servicer.live.load()
    assert refused.value.message.startswith(
        "live streaming is misconfigured: TRANSCRIPTION_STREAMING_CHUNK_S: 0.56 s is not a whole number"
    )
    assert not servicer.live.loaded
    servicer.runner.close()


def test_streaming_settings_from_the_environment() -> None:
    config = TranscriptionConfig.from_env(
        {
            "TRANSCRIPTION_STREAMING": "off",
            "TRANSCRIPTION_STREAMING_CHUNK_S": "1.6",
            "TRANSCRIPTION_STREAMING_LEFT_CONTEXT_S": "1.6",
            "TRANSCRIPTION_STREAMING_RIGHT_CONTEXT_S": "0.8",
            "TRANSCRIPTION_STREAMING_ENDPOINT_SILENCE_MS": "600",
            "TRANSCRIPTION_STREAMING_MAX_BATCH_STREAMS": "4",
            "STREAM_IDLE_TIMEOUT_S": "5",
        }
    )
    assert not config.streaming_enabled
    assert config.streaming == StreamingConfig(
        chunk_s=1.6, left_context_s=1.6, right_context_s=0.8, endpoint_silence_ms=600, max_batch_streams=4
    )
    assert config.live_limits.idle_timeout_s == 5.0
    defaults = TranscriptionConfig.from_env({"TRANSCRIPTION_STREAMING": " "})
    assert defaults.streaming_enabled and defaults.streaming == StreamingConfig()
    assert TranscriptionConfig.from_env({"TRANSCRIPTION_STREAMING": "TRUE"}).streaming_enabled


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"TRANSCRIPTION_STREAMING": "maybe"}, "TRANSCRIPTION_STREAMING='maybe': expected one of 1, true"),
        (
            {"TRANSCRIPTION_STREAMING_CHUNK_S": "fast"},
            "TRANSCRIPTION_STREAMING_CHUNK_S='fast': expected a number",
        ),
        (
            {"TRANSCRIPTION_STREAMING_LEFT_CONTEXT_S": "0.16"},
            "TRANSCRIPTION_STREAMING_LEFT_CONTEXT_S: must be at least 0.32 s (got 0.16 s)",
        ),
        (
            {
                "TRANSCRIPTION_STREAMING_LEFT_CONTEXT_S": "5.6",
                "TRANSCRIPTION_STREAMING_RIGHT_CONTEXT_S": "0.8",
            },
            "TRANSCRIPTION_STREAMING_LEFT_CONTEXT_S: chunk 0.8 + left 5.6 + right 0.8 s truncates",
        ),
        (
            {"TRANSCRIPTION_STREAMING_ENDPOINT_SILENCE_MS": "80"},
            "TRANSCRIPTION_STREAMING_ENDPOINT_SILENCE_MS='80': expected a whole number of at least 160",
        ),
        (
            {"TRANSCRIPTION_STREAMING_MAX_BATCH_STREAMS": "0"},
            "TRANSCRIPTION_STREAMING_MAX_BATCH_STREAMS='0': expected a whole number of at least 1",
        ),
    ],
)
def test_bad_streaming_settings_name_the_variable(environ: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        TranscriptionConfig.from_env(environ)
    assert str(refused.value).startswith(says)


# Over gRPC -------------------------------------------------------------------------------------


@pytest.fixture
def stub(live, batch_engine, start_host) -> Iterator[transcription_pb2_grpc.TranscriptionServiceStub]:
    runner = TranscriptionRunner(batch_engine)
    servicer = TranscriptionServicer(runner, live=live, live_limits=LiveLimits(idle_timeout_s=5.0))
    host = start_host([hosted_service(servicer)])
    wait_for_health(host.address, SERVICE)
    channel = grpc.insecure_channel(host.address)
    yield transcription_pb2_grpc.TranscriptionServiceStub(channel)
    channel.close()
    runner.close()


def requests(
    config: Config | None, audio: np.ndarray
) -> Iterator[transcription_pb2.StreamingTranscribeRequest]:
    if config is not None:
        yield transcription_pb2.StreamingTranscribeRequest(config=config)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    for start in range(0, len(pcm), FEED * 2):
        yield transcription_pb2.StreamingTranscribeRequest(audio=pcm[start : start + FEED * 2])


@needs_model
def test_grpc_stream_gives_finals_and_a_summary(stub, live, batch_engine, recording) -> None:
    responses = list(stub.StreamingTranscribe(requests(Config(), recording), timeout=60))
    finals = [r.final_result for r in responses if r.WhichOneof("event") == "final_result"]
    pcm = (np.clip(recording, -1.0, 1.0) * 32767).astype("<i2").astype(np.float32) / 32768
    assert [w.word for f in finals for w in f.words] == batch_engine.transcribe([pcm])[0].text.split()
    assert responses[-1].summary.num_finals == len(finals) >= 3
    assert responses[-1].summary.duration == round(len(recording) / RATE, 3)
    assert live.open_sessions == 0


def stream_error(stub, messages: list[transcription_pb2.StreamingTranscribeRequest]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failed:
        list(stub.StreamingTranscribe(iter(messages), timeout=30))
    return failed.value


@needs_model
def test_grpc_stream_protocol_and_refusals(stub, live, speech) -> None:
    audio = list(requests(None, speech[1][:RATE]))
    config = transcription_pb2.StreamingTranscribeRequest(config=Config())
    error = stream_error(stub, audio)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and reason_of(error) == "STREAM_PROTOCOL"
    error = stream_error(stub, [config, *audio, config])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and reason_of(error) == "STREAM_PROTOCOL"
    assert "second config" in error.details()
    diarize = transcription_pb2.StreamingTranscribeRequest(config=Config(diarize=True))
    error = stream_error(stub, [diarize, *audio])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and reason_of(error) == "INVALID_FIELD"
    assert "StreamingOrchestrate" in error.details()
    deadline = time.monotonic() + 5
    while live.open_sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.open_sessions == 0 and live.transcriber.open_streams == 0
