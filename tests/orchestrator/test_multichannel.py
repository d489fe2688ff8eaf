"""multichannel on OrchestrateRequest: a stereo call, one party per channel, with crosstalk.

The trained tiny TDT and the offline diarization backend on tests/support/stereo_call.py
(-20 dB crosstalk), through an orchestrator over in-process engines and one over the split gRPC
services (each channel then travels to the diarization service as FLAC). Without diarize each
channel is one speaker (CHANNEL_n); with it, speakers are found within each channel
(CHANNEL_n/SPEAKER_NN). Words, utterances and turns come back in time order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from parakeet.errors import reason_of
from parakeet.v1 import audio_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from parakeet_server.core.grpc_server import ServiceHost
from parakeet_server.orchestrator.backends import GrpcAddresses, GrpcBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from tests.orchestrator.test_streaming_orchestrate import (  # the loaded engines and their hosts
    backends_host,
    engines,
    in_process,
    orchestrator_host,
)
from tests.support.audio import sweep, wav_bytes
from tests.support.stereo_call import StereoCall, stereo_call

pytestmark = [pytest.mark.slow, pytest.mark.espeak]
__all__ = ["backends_host", "engines"]  # fixtures used by name


@pytest.fixture(scope="module")
def stubs(engines: tuple[Any, Any], backends_host: ServiceHost) -> Iterator[dict[str, Any]]:
    local = orchestrator_host(OrchestratorServicer(in_process(engines)))
    address = backends_host.address
    remote = orchestrator_host(OrchestratorServicer(GrpcBackends(GrpcAddresses(address, address))))
    channels = [grpc.insecure_channel(local.address), grpc.insecure_channel(remote.address)]
    yield {
        "in-process": orchestrator_pb2_grpc.OrchestratorServiceStub(channels[0]),
        "grpc": orchestrator_pb2_grpc.OrchestratorServiceStub(channels[1]),
    }
    for channel in channels:
        channel.close()
    local.drain(0.5)
    remote.drain(0.5)


@pytest.fixture(scope="module")
def call() -> StereoCall:
    return stereo_call()


def orchestrate(stub: Any, content: bytes, **fields: Any) -> orchestrator_pb2.OrchestrateResponse:
    request = orchestrator_pb2.OrchestrateRequest(audio=audio_pb2.Audio(content=content), **fields)
    response: orchestrator_pb2.OrchestrateResponse = stub.Orchestrate(request, timeout=120)
    return response


def test_each_channel_is_one_speaker_without_diarize(stubs: dict[str, Any], call: StereoCall) -> None:
    response = orchestrate(
        stubs["in-process"], call.wav(), multichannel=True, word_timestamps=True,
        response_format=audio_pb2.RESPONSE_FORMAT_RTTM,
    )  # fmt: skip
    for channel in (0, 1):
        assert [w.word for w in response.words if w.channel == channel] == call.words(channel)
    assert {(w.channel, w.speaker) for w in response.words} == {(0, "CHANNEL_0"), (1, "CHANNEL_1")}
    assert [(u.speaker, u.text) for u in response.utterances] == [
        (f"CHANNEL_{turn.channel}", turn.text) for turn in call.turns
    ]
    assert [w.start for w in response.words] == sorted(w.start for w in response.words)
    assert [t.speaker for t in response.speaker_turns] == [f"CHANNEL_{i % 2}" for i in range(6)]
    assert response.num_speakers == 2
    assert response.document.splitlines()[0].split()[7] == "CHANNEL_0"  # rttm: speakers without diarize
    assert list(response.warnings) == []


@pytest.mark.parametrize("architecture", ["in-process", "grpc"])
def test_diarize_finds_speakers_within_each_channel(
    stubs: dict[str, Any], call: StereoCall, architecture: str
) -> None:
    # The counts apply to each channel: one party per channel here. (Left to count, the offline
    # backend splits a 13 s single voice into 3-5 speakers, crosstalk silenced or not: measured.)
    response = orchestrate(
        stubs[architecture], call.wav(), multichannel=True, diarize=True, num_speakers=1, word_timestamps=True
    )
    for channel in (0, 1):
        words = [w for w in response.words if w.channel == channel]
        assert [w.word for w in words] == call.words(channel)
        assert {w.speaker for w in words} == {f"CHANNEL_{channel}/SPEAKER_00"}
    assert [u.speaker for u in response.utterances] == [f"CHANNEL_{i % 2}/SPEAKER_00" for i in range(6)]
    assert [u.text for u in response.utterances] == [turn.text for turn in call.turns]
    assert response.num_speakers == 2
    assert {t.speaker for t in response.speaker_turns} == {"CHANNEL_0/SPEAKER_00", "CHANNEL_1/SPEAKER_00"}
    starts = [t.start for t in response.speaker_turns]
    assert starts == sorted(starts)
    assert all(
        s.HasField("channel") and s.speaker.startswith(f"CHANNEL_{s.channel}/") for s in response.segments
    )
    assert " + " in response.model


def test_default_is_still_mono(stubs: dict[str, Any], call: StereoCall) -> None:
    response = orchestrate(stubs["in-process"], call.wav(), diarize=True, word_timestamps=True)
    assert response.words and not any(w.HasField("channel") for w in response.words)
    assert all(w.speaker.startswith("SPEAKER_") for w in response.words)


def test_mono_input_is_channel_0_with_a_warning(stubs: dict[str, Any], call: StereoCall) -> None:
    response = orchestrate(
        stubs["in-process"], call.channel_wav(1), multichannel=True, diarize=True, word_timestamps=True
    )
    assert list(response.warnings) == ["multichannel: the audio has one channel, transcribed as CHANNEL_0"]
    assert {w.channel for w in response.words} == {0}
    assert all(u.speaker.startswith("CHANNEL_0/SPEAKER_") for u in response.utterances)


def test_more_than_eight_channels_is_refused(stubs: dict[str, Any]) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        orchestrate(stubs["in-process"], wav_bytes(sweep(1.0), channels=9), multichannel=True, diarize=True)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(raised.value) == "INVALID_FIELD"
    assert raised.value.details().startswith("the audio has 9 channels; multichannel transcribes at most 8")
