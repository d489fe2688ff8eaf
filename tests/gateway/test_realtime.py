"""The gateway's live path: the streaming bridge to StreamingOrchestrate and the realtime WebSocket.

Real models throughout (the trained tiny TDT and the offline diarization backend behind an
in-process orchestrator, tests/gateway/live_stack.py) on a synthesized two-speaker conversation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from eval import synth
from eval.metrics import SpeakerWord, WordErrors, speaker_word_errors
from parakeet.v1 import orchestrator_pb2, streaming_pb2
from parakeet_server.gateway.config import GatewayConfig
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


# -- the realtime WebSocket ---------------------------------------------------------------------

WS_CHUNK = RATE // 5 * 2  # 200 ms of s16le per append


@dataclass
class Talked:
    """What a WebSocket session got: the server's events, how it closed, the subprotocol chosen."""

    events: list[dict[str, Any]]
    close_code: int | None
    close_reason: str
    subprotocol: str | None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]


def appends(audio: bytes, chunk: int = WS_CHUNK) -> list[dict[str, Any]]:
    return [
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio[i : i + chunk]).decode()}
        for i in range(0, len(audio), chunk)
    ]


async def converse(
    stack: LiveStack,
    sent: list[dict[str, Any] | str | bytes],
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    timeout: float = 240.0,
    query: str = "",
) -> Talked:
    """Send the events (dicts as JSON; str/bytes as they are) while reading until the server closes."""
    async with connect(
        f"{stack.ws_url}/v1/realtime?intent=transcription{query}",
        additional_headers=headers,
        subprotocols=[Subprotocol(s) for s in subprotocols] if subprotocols else None,
        max_size=None,
    ) as ws:

        async def send_all() -> None:
            for message in sent:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(json.dumps(message) if isinstance(message, dict) else message)

        sender = asyncio.create_task(send_all())
        events: list[dict[str, Any]] = []
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(timeout):
                async for message in ws:
                    events.append(json.loads(message))
        await sender
    return Talked(events, ws.close_code, ws.close_reason or "", ws.subprotocol)


def session_update(**session: Any) -> dict[str, Any]:
    return {"type": "transcription_session.update", "session": session}


@pytest.fixture(scope="module")
def diarized(stack: LiveStack, talk: synth.Conversation) -> Talked:
    update = session_update(
        input_audio_format="pcm16",
        input_audio_sample_rate=RATE,
        input_audio_transcription={"model": "gpt-4o-transcribe", "language": "en"},
        turn_detection={"type": "server_vad", "silence_duration_ms": 500},
        diarize=True,
        max_speakers=3,
    )
    commit = {"type": "input_audio_buffer.commit"}
    return asyncio.run(converse(stack, [update, *appends(pcm16(talk.audio)), commit]))


def test_a_session_gives_speaker_labelled_finals_and_ends_with_done(
    diarized: Talked, talk: synth.Conversation
) -> None:
    assert diarized.events[0]["type"] == "transcription_session.created"
    assert diarized.events[0]["session"]["input_audio_sample_rate"] == 24000
    (updated,) = diarized.of("transcription_session.updated")
    assert updated["session"]["input_audio_sample_rate"] == RATE
    assert updated["session"]["turn_detection"] == {"type": "server_vad", "silence_duration_ms": 500}
    assert updated["session"]["diarize"] is True and updated["session"]["max_speakers"] == 3
    assert updated["session"]["input_audio_transcription"]["model"] == "parakeet-tdt-0.6b-v2"
    completed = diarized.of("conversation.item.input_audio_transcription.completed")
    words = [word for item in completed for word in item["words"]]
    errors = WordErrors()
    errors.add(talk.transcript(), " ".join(word["word"] for word in words))
    assert errors.wer <= 0.10, f"WER {errors.wer:.3f}"
    wder = speaker_word_errors(
        [SpeakerWord(w, s) for w, s in talk.words()], [SpeakerWord(w["word"], w["speaker"]) for w in words]
    ).wder
    assert wder <= 0.10, f"WDER {wder:.3f}"
    assert [item["item_id"] for item in completed] == [f"item_{i}" for i in range(len(completed))]
    for item in completed:
        assert item["speaker"] in ("SPEAKER_00", "SPEAKER_01")
        assert {word["speaker"] for word in item["words"]} == {item["speaker"]}
        assert item["transcript"] == " ".join(word["word"] for word in item["words"])
        assert item["start"] <= item["end"]
    # OpenAI's order per item: committed before completed; the summary last, then close 1000.
    kinds = [(e["type"], e.get("item_id")) for e in diarized.events]
    for item in completed:
        committed = kinds.index(("input_audio_buffer.committed", item["item_id"]))
        assert committed < kinds.index((item["type"], item["item_id"]))
    done = diarized.events[-1]
    assert done["type"] == "transcription_session.done"
    assert done["num_speakers"] == 2 and sorted(done["speakers"]) == ["SPEAKER_00", "SPEAKER_01"]
    assert done["duration"] == pytest.approx(talk.duration, abs=0.01)  # no audio was dropped
    assert done["num_items"] == len(completed)
    assert (diarized.close_code, diarized.close_reason) == (1000, "")


def test_interim_deltas_and_speech_events(diarized: Talked) -> None:
    deltas = diarized.of("conversation.item.input_audio_transcription.delta")
    assert deltas, "interim results are on by default"
    for delta in deltas:
        assert delta["content_index"] == 0 and delta["text"]
        assert delta["delta"] == "" or delta["text"].endswith(delta["delta"])
    started = diarized.of("input_audio_buffer.speech_started")
    stopped = diarized.of("input_audio_buffer.speech_stopped")
    assert started and len(started) == len(stopped)
    assert all(s["audio_start_ms"] < t["audio_end_ms"] for s, t in zip(started, stopped, strict=True))
    event_ids = [event["event_id"] for event in diarized.events]
    assert len(set(event_ids)) == len(event_ids)


TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured() -> Iterator[LiveStack]:
    """A gateway with a token and a small message limit, over an orchestrator checking the same token."""
    settings = GatewayConfig(request_timeout_s=60.0, auth_token=TOKEN, ws_max_message_bytes=96 * 1024)
    with live_stack(settings, auth_token=TOKEN) as running:
        yield running


def short_session(talk: synth.Conversation, seconds: float = 3.0) -> list[dict[str, Any] | str | bytes]:
    audio = pcm16(talk.audio[: int(seconds * RATE)])
    return [
        session_update(input_audio_sample_rate=RATE),
        *appends(audio),
        {"type": "input_audio_buffer.commit"},
    ]


def test_without_a_token_the_socket_closes_4401(secured: LiveStack, talk: synth.Conversation) -> None:
    for headers, subprotocols, query in (
        (None, None, ""),
        ({"Authorization": "Bearer wrong"}, None, ""),
        (None, ["realtime", "openai-insecure-api-key.wrong"], ""),
        (None, ["realtime"], f"&api_key={TOKEN}"),  # never from the URL
    ):
        talked = asyncio.run(converse(secured, short_session(talk, 0.5), headers, subprotocols, query=query))
        assert [e["type"] for e in talked.events] == ["error"], talked.events
        assert talked.events[0]["error"]["code"] == "UNAUTHENTICATED"
        assert talked.events[0]["error"]["type"] == "authentication_error"
        assert talked.close_code == 4401
        assert "Bearer" in talked.close_reason
    assert wait_for_streams(secured, 0) == 0


@pytest.mark.parametrize("how", ["header", "subprotocol"])
def test_the_token_is_accepted_by_header_and_by_subprotocol(
    how: str, secured: LiveStack, talk: synth.Conversation
) -> None:
    if how == "header":
        talked = asyncio.run(converse(secured, short_session(talk), {"Authorization": f"Bearer {TOKEN}"}))
        assert talked.subprotocol is None
    else:
        offered = ["realtime", f"openai-insecure-api-key.{TOKEN}"]
        talked = asyncio.run(converse(secured, short_session(talk), subprotocols=offered))
        assert talked.subprotocol == "realtime"  # the key is never echoed back
    assert talked.of("error") == []
    assert talked.of("conversation.item.input_audio_transcription.completed")
    assert talked.events[-1]["type"] == "transcription_session.done"
    assert talked.events[-1]["duration"] == pytest.approx(3.0, abs=0.01)
    assert talked.close_code == 1000


def test_malformed_events_get_error_events_and_the_socket_still_works(
    stack: LiveStack, talk: synth.Conversation
) -> None:
    bad: list[dict[str, Any] | str | bytes] = [
        "{not json",
        {"type": "input_audio_buffer.frobnicate", "event_id": "evt_1"},
        {"type": "input_audio_buffer.append", "audio": "***not base64***", "event_id": "evt_2"},
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x00\x01\x02").decode()},
        {"type": "input_audio_buffer.clear"},
        session_update(input_audio_format="g711_ulaw"),
        session_update(diarize="yes"),
        b"\x00\x01",
        "[1, 2]",
    ]
    talked = asyncio.run(converse(stack, [*bad, *short_session(talk)]))
    errors = [(e["error"]["code"], e["error"]["param"], e["error"]["event_id"]) for e in talked.of("error")]
    assert errors == [
        ("INVALID_FIELD", None, None),
        ("INVALID_FIELD", "type", "evt_1"),
        ("INVALID_BASE64", "audio", "evt_2"),
        ("AUDIO_ENCODING", "audio", None),
        ("INVALID_FIELD", "type", None),
        ("INVALID_FIELD", "input_audio_format", None),
        ("INVALID_FIELD", "diarize", None),
        ("INVALID_FIELD", None, None),
        ("INVALID_FIELD", None, None),
    ]
    messages = [e["error"]["message"] for e in talked.of("error")]
    assert "not JSON" in messages[0] and "frobnicate" in messages[1] and "3 bytes" in messages[3]
    assert "'pcm16'" in messages[5]
    assert all(e["error"]["type"] == "invalid_request_error" for e in talked.of("error"))
    # The session went on: the valid update applied, the audio transcribed, the end as usual.
    (updated,) = talked.of("transcription_session.updated")
    assert updated["session"]["input_audio_sample_rate"] == RATE
    assert talked.events[-1]["type"] == "transcription_session.done"
    assert talked.events[-1]["duration"] == pytest.approx(3.0, abs=0.01)
    assert talked.close_code == 1000


def test_the_orchestrators_refusal_closes_with_its_status(stack: LiveStack, talk: synth.Conversation) -> None:
    update = session_update(input_audio_sample_rate=RATE, diarize=True, min_speakers=3, max_speakers=2)
    talked = asyncio.run(converse(stack, [update, *appends(pcm16(talk.audio[:RATE]))]))
    (error,) = talked.of("error")
    assert (error["error"]["code"], error["error"]["type"]) == ("INVALID_FIELD", "invalid_request_error"), (
        error
    )
    assert talked.close_code == 4400
    assert "speakers" in talked.close_reason and talked.close_reason == error["error"]["message"][:123]
    assert wait_for_streams(stack, 0) == 0


def test_a_message_over_the_limit_closes_4413(secured: LiveStack) -> None:
    big = {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(100 * 1024)).decode()}
    talked = asyncio.run(converse(secured, [big], {"Authorization": f"Bearer {TOKEN}"}))
    assert talked.events[-1]["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert talked.close_code == 4413 and "98304 bytes" in talked.close_reason


def test_a_client_that_disconnects_ends_the_upstream_stream(
    stack: LiveStack, talk: synth.Conversation
) -> None:
    async def leave_mid_stream() -> tuple[int, list[str]]:
        async with connect(f"{stack.ws_url}/v1/realtime?intent=transcription") as ws:
            await ws.send(json.dumps(session_update(input_audio_sample_rate=RATE, diarize=True)))
            for event in appends(pcm16(talk.audio[: 8 * RATE])):
                await ws.send(json.dumps(event))
            seen: list[str] = []
            while "conversation.item.input_audio_transcription.delta" not in seen:
                seen.append(json.loads(await ws.recv())["type"])
            open_now = await asyncio.to_thread(wait_for_streams, stack, 1)
        return open_now, seen  # the socket closed without a commit

    open_now, seen = asyncio.run(leave_mid_stream())
    assert open_now == 1 and "transcription_session.done" not in seen
    assert wait_for_streams(stack, 0, timeout=5.0) == 0


def test_a_frame_over_twice_the_limit_is_cut_by_the_protocol_with_1009(secured: LiveStack) -> None:
    """Up to twice ws_max_message_bytes the route refuses with an error event and 4413 (above);
    a larger frame is never read whole: uvicorn closes with 1009 (message too big), no event."""
    huge = {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(200 * 1024)).decode()}
    talked = asyncio.run(converse(secured, [huge], {"Authorization": f"Bearer {TOKEN}"}))
    assert talked.of("error") == []
    assert talked.close_code == 1009


def test_a_session_past_the_live_stream_limit_closes_4429_and_the_first_goes_on(
    talk: synth.Conversation,
) -> None:
    audio = pcm16(talk.audio[: 6 * RATE])
    update = session_update(input_audio_sample_rate=RATE)

    async def run(stack: LiveStack) -> tuple[Talked, list[dict[str, Any]], int | None]:
        async with connect(f"{stack.ws_url}/v1/realtime?intent=transcription") as first:
            await first.send(json.dumps(update))
            for event in appends(audio[: len(audio) // 2]):
                await first.send(json.dumps(event))
            assert await asyncio.to_thread(wait_for_streams, stack, 1) == 1
            second = await converse(stack, [update, *appends(audio[: WS_CHUNK * 3])], timeout=30)
            for event in [*appends(audio[len(audio) // 2 :]), {"type": "input_audio_buffer.commit"}]:
                await first.send(json.dumps(event))
            events: list[dict[str, Any]] = []
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(120):
                    async for message in first:
                        events.append(json.loads(message))
        return second, events, first.close_code

    with live_stack(max_live_streams=1) as limited:
        second, events, close_code = asyncio.run(run(limited))
    (error,) = second.of("error")
    assert (error["error"]["code"], error["error"]["type"]) == ("CONCURRENCY_LIMIT", "rate_limit_error"), (
        error
    )
    assert second.close_code == 4429 and "live streams" in second.close_reason
    assert [e["type"] for e in events if e["type"] == "error"] == []
    assert events[-1]["type"] == "transcription_session.done"
    assert events[-1]["duration"] == pytest.approx(6.0, abs=0.01)
    assert close_code == 1000


def test_the_openai_sdks_realtime_client_transcribes(stack: LiveStack, talk: synth.Conversation) -> None:
    """openai's own realtime client (client.realtime.connect, websockets underneath) in
    transcription mode against ws://.../v1/realtime: its events parse, the items complete, done ends it."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{stack.url}/v1", api_key="sk-anything", max_retries=0)
    audio = pcm16(talk.audio[: 6 * RATE])
    received: list[Any] = []
    with client.realtime.connect(extra_query={"intent": "transcription"}, max_retries=0) as connection:
        connection.send(session_update(input_audio_sample_rate=RATE, diarize=True))  # type: ignore[arg-type]
        for start in range(0, len(audio), WS_CHUNK):
            connection.input_audio_buffer.append(
                audio=base64.b64encode(audio[start : start + WS_CHUNK]).decode()
            )
        connection.input_audio_buffer.commit()
        with contextlib.suppress(ConnectionClosed):
            for event in connection:
                received.append(event)
    kinds = [event.type for event in received]
    assert kinds[0] == "transcription_session.created" and kinds[-1] == "transcription_session.done"
    completed = [e for e in received if e.type == "conversation.item.input_audio_transcription.completed"]
    assert completed and all(e.transcript for e in completed)
    assert all(e.model_extra["speaker"] in ("SPEAKER_00", "SPEAKER_01") for e in completed)
    assert received[-1].duration == pytest.approx(6.0, abs=0.01)  # type: ignore[union-attr]
