"""The gateway's live path: the streaming bridge to StreamingOrchestrate and the realtime WebSocket.

Real models throughout (the trained tiny TDT and the offline diarization backend behind an
in-process orchestrator, tests/gateway/live_stack.py) on a synthesized two-speaker conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from eval import synth
from eval.metrics import WordErrors
from parakeet.v1 import orchestrator_pb2, streaming_pb2
from parakeet_server.gateway.errors import GatewayError
from parakeet_server.gateway.orchestrator_client import OrchestratorClient
from tests.gateway.live_stack import RATE, LiveStack, live_stack, pcm16

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

CHUNK = RATE // 10 * 2  # 100 ms of s16le
Request = orchestrator_pb2.StreamingOrchestrateRequest


@pytest.fixture(scope="module")
def talk() -> synth.Conversation:
    return synth.conversation(seed=1207, num_speakers=2, num_turns=6, overlap_probability=0.0)


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    with live_stack() as running:
        yield running


async def requests(audio: bytes, **config: object) -> AsyncIterator[Request]:
    yield Request(config=streaming_pb2.StreamingConfig(**config))  # type: ignore[arg-type]
    for start in range(0, len(audio), CHUNK):
        yield Request(audio=audio[start : start + CHUNK])


def wait_for_streams(stack: LiveStack, count: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while len(stack.host.live_streams) != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(stack.host.live_streams)


def test_the_bridge_streams_finals_with_speakers(stack: LiveStack, talk: synth.Conversation) -> None:
    client = OrchestratorClient(stack.host.address, 60.0, 1024)

    async def run() -> list[orchestrator_pb2.StreamingOrchestrateResponse]:
        try:
            return [r async for r in client.stream(requests(pcm16(talk.audio), diarize=True), [])]
        finally:
            await client.aclose()

    responses = asyncio.run(run())
    finals = [r.final_result for r in responses if r.WhichOneof("event") == "final_result"]
    errors = WordErrors()
    errors.add(talk.transcript(), " ".join(w.word for f in finals for w in f.words))
    assert errors.wer <= 0.10, f"WER {errors.wer:.3f}"
    assert all(f.speaker in ("SPEAKER_00", "SPEAKER_01") for f in finals)
    assert responses[-1].WhichOneof("event") == "summary"
    assert responses[-1].summary.num_speakers == 2
    assert responses[-1].summary.num_finals == len(finals)


def test_closing_the_bridge_cancels_the_upstream_stream(stack: LiveStack, talk: synth.Conversation) -> None:
    client = OrchestratorClient(stack.host.address, 60.0, 1024)

    async def run() -> int:
        try:
            async with contextlib.aclosing(
                client.stream(requests(pcm16(talk.audio), diarize=True), [])
            ) as it:
                await anext(it)
                open_now = await asyncio.to_thread(wait_for_streams, stack, 1)
            return open_now
        finally:
            await client.aclose()

    assert asyncio.run(run()) == 1
    assert wait_for_streams(stack, 0) == 0


def test_a_refused_config_becomes_a_gateway_error(stack: LiveStack) -> None:
    client = OrchestratorClient(stack.host.address, 60.0, 1024)

    async def run() -> None:
        try:
            async for _ in client.stream(requests(b"", diarize=True, min_speakers=3, max_speakers=2), []):
                pass
        finally:
            await client.aclose()

    with pytest.raises(GatewayError) as raised:
        asyncio.run(run())
    assert (raised.value.status, raised.value.reason) == (400, "INVALID_FIELD")
    assert "speakers" in raised.value.message
