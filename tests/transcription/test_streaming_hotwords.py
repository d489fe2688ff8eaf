"""Hotwords in live streams: NeMo's per-stream phrase boosting inside the buffered streaming pipeline.

The trained tiny TDT on noisy held-out espeak speech (eval/hotwords.py): a word it confuses comes
out right in a stream that boosts it and wrong in one that does not, a stream without hotwords
decodes to the bit as before even in the same pass as boosted ones, bad hotwords are refused with
their reason by StreamingTranscribe and StreamingOrchestrate, and hotwords reach the transcription
stream through the orchestrator, in process and over gRPC.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from eval import hotwords as measure
from parakeet.errors import reason_of
from parakeet.v1 import (
    audio_pb2,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    streaming_pb2,
    transcription_pb2,
    transcription_pb2_grpc,
)
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.core.grpc_server import HostedService, ServerOptions, ServiceHost
from parakeet_server.orchestrator.backends import GrpcAddresses, GrpcBackends, InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.hotwords import Hotword, HotwordSet
from parakeet_server.transcription.live import LiveTranscription, check_config
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from parakeet_server.transcription.streaming import Final, StreamEvent, StreamingTranscriber
from parakeet_server.transcription.streaming_config import StreamingConfig

RATE = 16_000
FEED = RATE // 10  # 100 ms packets
PCM_CHUNK = FEED * 2  # the same as s16le bytes
TRANSCRIPTION = "parakeet.v1.TranscriptionService"
ORCHESTRATOR = "parakeet.v1.OrchestratorService"
Config = streaming_pb2.StreamingConfig

# Held-out sentence 6 of eval/hotwords.py's measure split under 8 dB noise: the tiny model hears
# "world" as "warm" there (streamed, as in batch), and the default boost on "world" alone brings it back.
SAID = "travel sister snow apple fox start world question"
PLAIN = "travel six snow apple fox back warm quick"
BOOSTED = "travel six snow apple fox back world quick"
WORLD: HotwordSet = (Hotword("world"),)
OTHER: HotwordSet = (Hotword("coffee", 2.0), Hotword("letter", 2.0))


def hotword(phrase: str, boost: float | None = None) -> audio_pb2.Hotword:
    if boost is None:
        return audio_pb2.Hotword(phrase=phrase)
    return audio_pb2.Hotword(phrase=phrase, boost=boost)


def needs_model(test: Any) -> Any:
    return pytest.mark.slow(pytest.mark.espeak(test))


@pytest.fixture(scope="module")
def sentence() -> np.ndarray:
    held = measure.held_out(measure.MEASURE_SEED, 7, snr_db=8.0)
    assert held[6].text == SAID
    audio: np.ndarray = np.concatenate([held[6].audio, np.zeros(RATE // 2, np.float32)])
    return audio


@pytest.fixture(scope="module")
def transcriber() -> StreamingTranscriber:
    return StreamingTranscriber(measure.MODEL, StreamingConfig(), device="cpu")


@pytest.fixture
def live(transcriber: StreamingTranscriber) -> Iterator[LiveTranscription]:
    """Live sessions on the module's transcriber; the driver stops after the test, so the other
    tests may step the transcriber themselves."""
    live = LiveTranscription.over(transcriber, "tiny_tdt_espeak.nemo")
    yield live
    live.stop()


def together(
    transcriber: StreamingTranscriber, audio: np.ndarray, sets: list[HotwordSet]
) -> tuple[list[list[StreamEvent]], list[int]]:
    """One stream per hotword set over the same audio, fed in lockstep so they share every pass;
    each stream's events, and the pass sizes."""
    ids = [transcriber.open_stream(hotwords=hotwords) for hotwords in sets]
    events: dict[int, list[StreamEvent]] = {i: [] for i in ids}
    sizes: list[int] = []
    for start in range(0, len(audio), FEED):
        for stream in ids:
            transcriber.feed(stream, audio[start : start + FEED])
        while transcriber.ready_streams():
            report = transcriber.step()
            sizes += report.batch_sizes
            for event in report.events:
                events[event.stream].append(event)
    for stream in ids:
        events[stream] += transcriber.close(stream)
    return [events[i] for i in ids], sizes


def finals(events: list[StreamEvent]) -> list[tuple[str, tuple[Any, ...]]]:
    """Each final's text and words (times and confidences), without the stream's id."""
    return [(e.text, e.words) for e in events if isinstance(e, Final)]


def text(events: list[StreamEvent]) -> str:
    return " ".join(e.text for e in events if isinstance(e, Final))


def multi_model_is_empty(transcriber: StreamingTranscriber) -> bool:
    boosting = transcriber._pipeline.boosting
    assert boosting is not None
    multi_model = boosting.booster._multi_model  # NeMo keeps removed models' slots, marked free
    return not transcriber._boosts and len(multi_model.free_ids) == multi_model.num_models


# --- validation (no model) -------------------------------------------------------------------


def test_live_config_checks_hotwords_as_transcribe_does() -> None:
    checked = check_config(Config(hotwords=[hotword("  Ada   Lovelace "), hotword("world", 2.0)]))
    assert checked == (Hotword("Ada Lovelace", 0.5), Hotword("world", 2.0))
    assert check_config(Config()) == ()


@pytest.mark.parametrize(
    ("hotwords", "says"),
    [
        ([hotword("ok"), hotword("  ")], "hotwords[1]: phrase is empty"),
        ([hotword("world", 11.0)], "hotwords[0]: boost must be in (0, 10] (got 11)"),
        ([hotword(f"w{i}") for i in range(101)], "101 hotwords is over the limit of 100"),
    ],
)
def test_bad_live_hotwords_are_refused_with_a_reason(hotwords: list[audio_pb2.Hotword], says: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_config(Config(hotwords=hotwords))
    assert refused.value.reason == "INVALID_FIELD"
    assert says in refused.value.message


# --- the streaming pipeline with the tiny trained model ----------------------------------------


@needs_model
def test_a_boosted_stream_recalls_the_word_and_a_plain_one_in_the_same_pass_is_unchanged(
    transcriber: StreamingTranscriber, sentence: np.ndarray
) -> None:
    (alone,), sizes = together(transcriber, sentence, [()])
    assert text(alone) == PLAIN and max(sizes) == 1
    unboosted, _ = together(transcriber, sentence, [(), (), ()])
    (plain, boosted, other), sizes = together(transcriber, sentence, [(), WORLD, OTHER])
    assert text(boosted) == BOOSTED
    # Three streams, two boosting trees, one forward pass and one decoding loop per step.
    assert set(sizes) == {3}
    # Without hotwords: the finals, word times and confidences of a pass as large without any
    # hotwords, to the bit (a pass's size alone moves confidences in the 8th digit).
    assert finals(plain) == finals(unboosted[0])
    assert "world" not in text(other).split()
    # Every stream closed: its tree left NeMo's multi-model, and plain decoding is as before.
    assert multi_model_is_empty(transcriber)
    (again,), _ = together(transcriber, sentence, [()])
    assert finals(again) == finals(alone)


@needs_model
def test_streams_with_the_same_hotwords_share_one_tree_until_the_last_closes(
    transcriber: StreamingTranscriber,
) -> None:
    first = transcriber.open_stream(hotwords=WORLD)
    second = transcriber.open_stream(hotwords=WORLD)
    tree_id, holders = transcriber._boosts[WORLD]
    assert holders == 2
    transcriber.cancel(first)
    assert transcriber._boosts[WORLD] == [tree_id, 1]
    assert transcriber.close(second) == []
    assert multi_model_is_empty(transcriber)


# --- StreamingTranscribe and StreamingOrchestrate --------------------------------------------


class Servers:
    """StreamingTranscribe over gRPC on the module's transcriber, and an orchestrator over it
    both in process and through that gRPC service."""

    def __init__(self, live: LiveTranscription) -> None:
        # Only live sessions are served here: the batch engine is never loaded.
        engine = TranscriptionEngine(TranscriptionEngineConfig(model=measure.MODEL, device="cpu"))
        self.runner = TranscriptionRunner(engine)
        servicer = TranscriptionServicer(self.runner, live=live)
        self.hosts = [
            host(
                TRANSCRIPTION,
                lambda s: transcription_pb2_grpc.add_TranscriptionServiceServicer_to_server(servicer, s),
            )
        ]
        address = self.hosts[0].address
        self.transcription = transcription_pb2_grpc.TranscriptionServiceStub(grpc.insecure_channel(address))
        in_process = InProcessBackends(
            servicer.Transcribe, unused, lambda: None, stream_transcription=live.open_session
        )
        over_grpc = GrpcBackends(GrpcAddresses(address, address))
        self.orchestrators = {}
        for name, backends in (("in-process", in_process), ("grpc", over_grpc)):
            orchestrator = OrchestratorServicer(backends)
            self.hosts.append(
                host(
                    ORCHESTRATOR,
                    lambda s, o=orchestrator: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
                        o, s
                    ),
                )
            )
            channel = grpc.insecure_channel(self.hosts[-1].address)
            self.orchestrators[name] = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)

    def close(self) -> None:
        for server in self.hosts:
            server.drain(0.5)
        self.runner.close()


def unused(*args: Any) -> Any:
    raise AssertionError("no batch diarization in these tests")


def host(name: str, add: Any) -> ServiceHost:
    server = ServiceHost([HostedService(name, add)], ServerOptions(host="127.0.0.1", port=0, grace_s=1.0))
    server.start()
    assert server.wait_until_warm(30)
    return server


@pytest.fixture
def servers(live: LiveTranscription) -> Iterator[Servers]:
    servers = Servers(live)
    yield servers
    servers.close()


def pcm(audio: np.ndarray) -> bytes:
    data: bytes = (np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes()
    return data


def stream_requests(request_type: Any, audio: np.ndarray, config: Config) -> Iterator[Any]:
    yield request_type(config=config)
    data = pcm(audio)
    for start in range(0, len(data), PCM_CHUNK):
        yield request_type(audio=data[start : start + PCM_CHUNK])


def final_text(responses: list[Any]) -> str:
    return " ".join(r.final_result.text for r in responses if r.WhichOneof("event") == "final_result")


@needs_model
def test_bad_hotwords_are_refused_by_streaming_transcribe_and_orchestrate(servers: Servers) -> None:
    config = Config(hotwords=[hotword("world"), hotword("")])
    calls = [
        lambda: list(
            servers.transcription.StreamingTranscribe(
                stream_requests(
                    transcription_pb2.StreamingTranscribeRequest, np.zeros(RATE, np.float32), config
                ),
                timeout=60,
            )
        )
    ] + [
        lambda stub=stub: list(
            stub.StreamingOrchestrate(
                stream_requests(
                    orchestrator_pb2.StreamingOrchestrateRequest, np.zeros(RATE, np.float32), config
                ),
                timeout=60,
            )
        )
        for stub in servers.orchestrators.values()
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(refused.value) == "INVALID_FIELD"
        assert "hotwords[1]: phrase is empty" in refused.value.details()


@needs_model
def test_hotwords_reach_the_live_transcription_through_the_orchestrator(
    servers: Servers, sentence: np.ndarray
) -> None:
    boosted = Config(hotwords=[hotword("world")])
    direct = list(
        servers.transcription.StreamingTranscribe(
            stream_requests(transcription_pb2.StreamingTranscribeRequest, sentence, boosted), timeout=300
        )
    )
    assert final_text(direct) == BOOSTED
    for name, stub in servers.orchestrators.items():
        for config, expected in ((boosted, BOOSTED), (Config(), PLAIN)):
            responses = list(
                stub.StreamingOrchestrate(
                    stream_requests(orchestrator_pb2.StreamingOrchestrateRequest, sentence, config),
                    timeout=300,
                )
            )
            assert final_text(responses) == expected, name
