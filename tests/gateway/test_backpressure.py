"""Back-pressure through the gateway's live paths (#17): a client faster than the orchestrator is slowed.

A scripted StreamingOrchestrate servicer stops reading its requests while a gate is closed (a
transport test: no model is involved, the bytes are only counted). While it is closed the bytes
the client gets to send (WebSocket) or the gateway reads from the upload (SSE) must stay under a
few MB for seconds; once it opens, every byte arrives and the session ends as usual.

Where the bytes wait while the gate is closed (measured on loopback, 64 KiB appends): the realtime
queue (16 appends, 1 MiB), the gRPC stream window at the orchestrator (~4 MB), uvicorn (one
message) and the two kernel socket buffers; about 9-10 MB of audio in all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parakeet.v1 import orchestrator_pb2, orchestrator_pb2_grpc, streaming_pb2
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.gateway import sse
from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.config import GatewayConfig
from parakeet_server.gateway.server import uvicorn_options
from tests.gateway.conftest import ORCHESTRATOR, serve_http

MIB = 1024 * 1024
APPEND = 64 * 1024  # audio bytes per append (87 KB of base64)
TOTAL = 48 * MIB  # what the client sends in all: far more than any buffer on the way
BOUND = 24 * MIB  # what may be accepted while nothing is consumed (measured: ~10 MB)
STALLED = 1 * MIB  # how much more may get through in the second half of the wait
GATED_S = 3.0
Response = orchestrator_pb2.StreamingOrchestrateResponse


class GatedStreams(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Answers a stream at once, then reads no audio until `gate` is set; counts what it reads."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.received = 0
        self.configs: list[streaming_pb2.StreamingConfig] = []

    def StreamingOrchestrate(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Response]:
        self.configs.append(next(request_iterator).config)
        yield Response(processed_seconds=0.0)  # no event: the SSE response starts, nothing is sent
        if not self.gate.wait(60):
            return
        for request in request_iterator:
            self.received += len(request.audio)
        seconds = self.received / 32_000
        yield Response(
            final_result=streaming_pb2.FinalResult(text="all of it", start=0.0, end=seconds),
            processed_seconds=seconds,
        )
        yield Response(summary=streaming_pb2.StreamingSummary(duration=seconds, model="gated"))


@pytest.fixture
def gated(start_host: Callable[..., Any]) -> Iterator[tuple[GatedStreams, str]]:
    servicer = GatedStreams()
    host = start_host(
        [
            HostedService(
                ORCHESTRATOR,
                lambda server: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
                    servicer, server
                ),
            )
        ]
    )
    assert host.wait_until_warm(10)
    settings = GatewayConfig(orchestrator=host.address, request_timeout_s=60.0)
    try:
        with serve_http(create_app(settings), **uvicorn_options(settings)) as url:
            yield servicer, url
    finally:
        servicer.gate.set()  # a failed test leaves no handler waiting


def test_a_websocket_client_faster_than_the_orchestrator_is_slowed_then_delivers_everything(
    gated: tuple[GatedStreams, str],
) -> None:
    servicer, url = gated
    # Silence, the most compressible audio: with permessage-deflate on, ~200 MB of it went out in 1 s.
    append = json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(APPEND)).decode()}
    )

    async def run() -> tuple[list[int], int, list[dict[str, Any]], int | None, str | None]:
        ws_url = url.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
        async with connect(ws_url, max_size=None) as ws:  # offers permessage-deflate, as browsers do
            update = {"type": "transcription_session.update", "session": {"input_audio_sample_rate": 16_000}}
            await ws.send(json.dumps(update))
            sent = 0

            async def push() -> None:
                nonlocal sent
                for _ in range(TOTAL // APPEND):
                    await ws.send(append)
                    sent += APPEND

            pusher = asyncio.create_task(push())
            samples = []
            for _ in range(2):
                await asyncio.sleep(GATED_S / 2)
                samples.append(sent)
            received_while_gated = servicer.received
            servicer.gate.set()
            await asyncio.wait_for(pusher, 60)
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            events = []
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(60):
                    async for message in ws:
                        events.append(json.loads(message))
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
            return samples, received_while_gated, events, ws.close_code, extensions

    samples, received_while_gated, events, close_code, extensions = asyncio.run(run())
    assert extensions is None, "permessage-deflate must be declined"
    assert received_while_gated == 0
    assert samples[1] <= BOUND, f"{samples[1] / MIB:.1f} MiB accepted while nothing was consumed"
    assert samples[1] - samples[0] <= STALLED, f"the client's sends did not stall: {samples}"
    assert servicer.received == TOTAL  # nothing dropped
    assert [e["type"] for e in events if e["type"] == "error"] == []
    done = events[-1]
    assert done["type"] == "transcription_session.done" and done["model"] == "gated"
    assert done["duration"] == pytest.approx(TOTAL / 32_000)
    assert close_code == 1000


def test_an_sse_upload_is_fed_only_as_fast_as_the_orchestrator_reads(
    gated: tuple[GatedStreams, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, url = gated
    pulled = 0
    feed = sse.stream_requests

    async def counted(form: sse.StreamForm) -> AsyncIterator[orchestrator_pb2.StreamingOrchestrateRequest]:
        nonlocal pulled
        async for request in feed(form):
            pulled += len(request.audio)
            yield request

    monkeypatch.setattr(sse, "stream_requests", counted)
    upload = bytes(TOTAL)
    files = {"file": ("talk.wav", upload, "audio/wav")}
    data = {"model": "parakeet", "stream": "true"}
    with httpx.stream(
        "POST", f"{url}/v1/audio/transcriptions", files=files, data=data, timeout=60
    ) as response:
        assert response.status_code == 200
        samples = []
        for _ in range(2):
            time.sleep(GATED_S / 2)
            samples.append(pulled)
        received_while_gated = servicer.received
        servicer.gate.set()
        body = response.read().decode()
    assert received_while_gated == 0
    assert samples[1] <= BOUND, f"{samples[1] / MIB:.1f} MiB fed while nothing was consumed"
    assert samples[1] - samples[0] <= STALLED, f"the feeding did not stall: {samples}"
    assert pulled == servicer.received == TOTAL
    events = [
        json.loads(line.removeprefix("data: ")) for line in body.splitlines() if line.startswith("data: ")
    ]
    assert [e["type"] for e in events] == ["transcript.text.delta", "transcript.text.done"]
    assert events[-1]["text"] == "all of it" and events[-1]["duration"] == pytest.approx(TOTAL / 32_000)
    assert servicer.configs[0].audio_format.encoding == streaming_pb2.AUDIO_ENCODING_CONTAINER
