"""`POST /v1/audio/transcriptions` with `stream=true`, through the openai client's `stream=True`.

Real models (the trained tiny TDT and the offline diarization backend behind an in-process
orchestrator, tests/gateway/live_stack.py) on a synthesized two-speaker conversation: the deltas
join into the batch transcript, diarized_json segments carry the right speakers, refusals before
the first event are the JSON errors of the non-streaming route, a limit met after the events
began is an `error` event the client raises, and a client that goes away ends the live stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from openai.types.audio import (
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionTextSegmentEvent,
)

from eval import synth
from eval.metrics import SpeakerWord, speaker_word_errors
from parakeet_server.core.live import LiveLimits
from parakeet_server.gateway.config import GatewayConfig
from tests.gateway.live_stack import LiveStack, live_stack
from tests.support.audio import wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

TOKEN = "sk-sse-test"


@pytest.fixture(scope="module")
def talk() -> synth.Conversation:
    return synth.conversation(seed=1207, num_speakers=2, num_turns=6, overlap_probability=0.0)


@pytest.fixture(scope="module")
def wav(talk: synth.Conversation) -> bytes:
    return wav_bytes(talk.audio.astype(np.float32))


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    with live_stack() as running:
        yield running


def client(stack: LiveStack, api_key: str = "sk-anything") -> OpenAI:
    return OpenAI(base_url=f"{stack.url}/v1", api_key=api_key, max_retries=0, timeout=120.0)


def stream_events(stack: LiveStack, wav: bytes, **options: Any) -> list[Any]:
    events = client(stack).audio.transcriptions.create(
        file=("talk.wav", wav), model="parakeet", stream=True, **options
    )
    return list(events)


def wait_for_streams(stack: LiveStack, count: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while len(stack.host.live_streams) != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(stack.host.live_streams)


@pytest.fixture(scope="module")
def diarized(stack: LiveStack, wav: bytes) -> list[Any]:
    return stream_events(stack, wav, response_format="diarized_json")


def test_deltas_join_into_the_batch_transcript(stack: LiveStack, wav: bytes, diarized: list[Any]) -> None:
    batch = client(stack).audio.transcriptions.create(
        file=("talk.wav", wav), model="parakeet", extra_body={"diarize": "true"}
    )
    deltas = [e for e in diarized if isinstance(e, TranscriptionTextDeltaEvent)]
    done = diarized[-1]
    assert isinstance(done, TranscriptionTextDoneEvent) and done.type == "transcript.text.done"
    assert len(deltas) >= 4
    assert "".join(d.delta for d in deltas) == done.text == batch.text
    assert all(d.delta.startswith(" ") for d in deltas[1:]) and not deltas[0].delta.startswith(" ")
    extras = done.model_extra or {}
    assert extras["speakers"] == ["SPEAKER_00", "SPEAKER_01"] and extras["num_speakers"] == 2
    assert extras["duration"] == pytest.approx(len(wav[44:]) / 2 / 16_000, abs=0.01)
    assert "offline" in extras["model"] and extras["warnings"] == []


def test_diarized_json_segments_carry_the_speakers(talk: synth.Conversation, diarized: list[Any]) -> None:
    segments = [e for e in diarized if isinstance(e, TranscriptionTextSegmentEvent)]
    deltas = [e for e in diarized if isinstance(e, TranscriptionTextDeltaEvent)]
    # Each final: its delta, then its segment (same id, same text).
    assert [type(e) for e in diarized[:-1]] == [
        TranscriptionTextDeltaEvent,
        TranscriptionTextSegmentEvent,
    ] * len(segments)
    assert (
        [d.segment_id for d in deltas]
        == [s.id for s in segments]
        == [f"seg_{i}" for i in range(len(segments))]
    )
    assert [d.delta.strip() for d in deltas] == [s.text for s in segments]
    assert all(0 <= s.start < s.end <= talk.duration for s in segments)
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert {s.speaker for s in segments} == {"SPEAKER_00", "SPEAKER_01"}
    hypothesis = [SpeakerWord(word, s.speaker) for s in segments for word in s.text.split()]
    reference = [SpeakerWord(word, speaker) for word, speaker in talk.words()]
    assert speaker_word_errors(reference, hypothesis).wder <= 0.10


def test_json_streams_deltas_and_done_only(stack: LiveStack, wav: bytes, diarized: list[Any]) -> None:
    """Without diarized_json (and without diarize) no segments, no speakers; the same words."""
    events = stream_events(stack, wav)
    assert {e.type for e in events[:-1]} == {"transcript.text.delta"}
    assert all(e.segment_id is None for e in events[:-1])
    done = events[-1]
    assert done.type == "transcript.text.done" and done.text == diarized[-1].text
    assert (done.model_extra or {})["speakers"] == [] and (done.model_extra or {})["num_speakers"] == 0


def test_the_wire_format_is_server_sent_events(stack: LiveStack, wav: bytes) -> None:
    """What a client without the SDK reads: `event:` naming the type of each `data:` line's JSON."""
    with httpx.stream(
        "POST",
        f"{stack.url}/v1/audio/transcriptions",
        files={"file": ("talk.wav", wav)},
        data={"stream": "true", "model": "parakeet"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        body = response.read().decode()
    blocks = [block.split("\n") for block in body.split("\n\n") if block]
    assert all(len(lines) == 2 for lines in blocks)
    types = [lines[0].removeprefix("event: ") for lines in blocks]
    assert [json.loads(lines[1].removeprefix("data: "))["type"] for lines in blocks] == types
    assert types[-1] == "transcript.text.done" and set(types[:-1]) == {"transcript.text.delta"}


def _refusal(stack: LiveStack, wav: bytes, **options: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as raised:
        stream_events(stack, wav, **options)
    return raised.value


def test_refusals_before_the_first_event_are_json_errors(stack: LiveStack, wav: bytes) -> None:
    # Small and large (many chunks still to write when the orchestrator refuses the first: the
    # refusal must still be the orchestrator's, not grpc.aio's INTERNAL, grpc/grpc#36066).
    for size in (1, 100):
        bad_file = _refusal(stack, b"this is not audio at all" * 64 * size)
        assert bad_file.status_code == 400
        assert bad_file.response.headers["content-type"] == "application/json"
        assert bad_file.body["reason"] == "AUDIO_ENCODING"  # type: ignore[index]
        assert "could not decode the stream" in bad_file.message
    empty = _refusal(stack, b"")
    assert (empty.status_code, empty.body["reason"], empty.body["param"]) == (400, "AUDIO_MISSING", "file")  # type: ignore[index]
    srt = _refusal(stack, wav, response_format="srt")
    assert (srt.status_code, srt.body["reason"], srt.body["param"]) == (  # type: ignore[index]
        400,
        "UNSUPPORTED_FORMAT",
        "response_format",
    )
    assert srt.body["message"] == (  # type: ignore[index]
        "stream=true has no response_format 'srt' (it renders a whole document); "
        "use one of: json, text, diarized_json (diarized_json adds speaker segments), or leave stream out"
    )
    counts = _refusal(stack, wav, extra_body={"diarize": "true", "min_speakers": "3", "max_speakers": "2"})
    assert (counts.status_code, counts.body["reason"]) == (400, "INVALID_FIELD")  # type: ignore[index]
    assert counts.body["message"] == "min_speakers (3) must not be greater than max_speakers (2)"  # type: ignore[index]
    assert wait_for_streams(stack, 0) == 0


def test_a_limit_met_after_the_first_event_is_an_error_event(wav: bytes) -> None:
    """The finals up to the limit arrive as deltas, then the client raises the limit's error (no done)."""
    with live_stack(live_limits=LiveLimits(max_stream_seconds=6.0)) as limited:
        events: list[Any] = []
        stream = client(limited).audio.transcriptions.create(
            file=("talk.wav", wav), model="parakeet", stream=True
        )
        with pytest.raises(openai.APIError) as raised:
            for event in stream:
                events.append(event)
    assert events and all(isinstance(e, TranscriptionTextDeltaEvent) for e in events)
    assert "limit of 6 s of audio" in raised.value.message
    assert raised.value.body["reason"] == "DURATION_LIMIT"  # type: ignore[index]
    assert raised.value.body["code"] == "resource_exhausted"  # type: ignore[index]


def test_a_wrong_token_is_a_401_before_any_event(wav: bytes) -> None:
    with live_stack(settings=GatewayConfig(auth_token=TOKEN, request_timeout_s=60.0)) as guarded:
        with pytest.raises(openai.AuthenticationError) as raised:
            stream_events(guarded, wav)
        assert raised.value.status_code == 401
        assert raised.value.response.headers["content-type"] == "application/json"
        assert raised.value.body["reason"] == "UNAUTHENTICATED"  # type: ignore[index]
        events = client(guarded, api_key=TOKEN).audio.transcriptions.create(
            file=("talk.wav", wav), model="parakeet", stream=True
        )
        assert list(events)[-1].type == "transcript.text.done"


def test_a_client_that_goes_away_ends_the_live_stream(stack: LiveStack, talk: synth.Conversation) -> None:
    long = wav_bytes(np.tile(talk.audio.astype(np.float32), 6))  # about 90 s: still streaming at the close
    stream = client(stack).audio.transcriptions.create(file=("long.wav", long), model="parakeet", stream=True)
    first = next(iter(stream))
    assert first.type == "transcript.text.delta"
    assert len(stack.host.live_streams) == 1
    closed = time.monotonic()
    stream.close()
    assert wait_for_streams(stack, 0, timeout=5.0) == 0
    assert time.monotonic() - closed < 5.0


def test_the_upload_and_live_stream_limits_apply_before_any_event(talk: synth.Conversation) -> None:
    """Same limits as without stream: an upload over the gateway's limit is 413, a stream past the
    orchestrator's live streams is 429 (retryable), both JSON; the running stream goes on."""
    long = wav_bytes(np.tile(talk.audio.astype(np.float32), 6))  # about 90 s: still streaming
    settings = GatewayConfig(max_upload_bytes=len(long), request_timeout_s=60.0)
    with live_stack(settings=settings, max_live_streams=1) as limited:
        too_large = _refusal(limited, long + b"\0" * 1024)
        assert (too_large.status_code, too_large.body["reason"]) == (413, "PAYLOAD_TOO_LARGE")  # type: ignore[index]
        running = client(limited).audio.transcriptions.create(
            file=("long.wav", long), model="parakeet", stream=True
        )
        events = iter(running)
        assert next(events).type == "transcript.text.delta"
        busy = _refusal(limited, long)
        assert (busy.status_code, busy.body["reason"]) == (429, "CONCURRENCY_LIMIT")  # type: ignore[index]
        assert busy.response.headers["retry-after"] == "1"
        assert [e.type for e in events][-1] == "transcript.text.done"
