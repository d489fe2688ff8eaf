"""The official openai client against the gateway: every response_format, speakers, forwarding.

The gateway runs under uvicorn in front of a real gRPC OrchestratorService whose backends are
scripted (see conftest.py), so what is checked is the gateway's translation both ways.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
import srt
import webvtt

from parakeet.v1 import orchestrator_pb2
from parakeet_server.core.errors import ServiceUnavailable
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from tests.gateway.conftest import DIARIZATION_MODEL, TEXT, TRANSCRIPTION_MODEL, WAV, Scripted

FILE = ("call.wav", WAV)
SEGMENTS_WITH_SPEAKERS = [
    (0, 0.0, 0.9, "Hello there.", "SPEAKER_00"),
    (1, 1.6, 2.3, "Hi back.", "SPEAKER_01"),
    (2, 4.5, 4.9, "Bye.", "SPEAKER_00"),
]
WORDS_WITH_SPEAKERS = [
    ("Hello", 0.0, 0.4, "SPEAKER_00"),
    ("there.", 0.5, 0.9, "SPEAKER_00"),
    ("Hi", 1.6, 1.8, "SPEAKER_01"),
    ("back.", 1.9, 2.3, "SPEAKER_01"),
    ("Bye.", 4.5, 4.9, "SPEAKER_00"),
]


def test_json_is_openai_transcription_and_echoes_the_model(gateway) -> None:
    raw = gateway.client().audio.transcriptions.with_raw_response.create(model="whisper-1", file=FILE)
    transcription = raw.parse()
    assert isinstance(transcription, openai.types.audio.Transcription)
    assert transcription.text == TEXT
    assert transcription.usage.type == "duration" and transcription.usage.seconds == 5.0
    assert raw.headers["x-parakeet-requested-model"] == "whisper-1"
    assert raw.headers["x-parakeet-model"] == TRANSCRIPTION_MODEL
    assert "x-parakeet-ignored" not in raw.headers
    (request,) = gateway.backends.transcribe_requests
    assert request.audio.content == WAV  # the upload reaches the orchestrator byte for byte
    assert gateway.backends.diarize_requests == []


def test_text_is_the_rendered_document(gateway) -> None:
    client = gateway.client()
    text = client.audio.transcriptions.create(model="m", file=FILE, response_format="text")
    assert text == "Hello there. Hi back.\nBye.\n"
    script = client.audio.transcriptions.create(
        model="m", file=FILE, response_format="text", extra_body={"diarize": True}
    )
    assert script == "SPEAKER_00: Hello there.\nSPEAKER_01: Hi back.\nSPEAKER_00: Bye.\n"


def test_srt_parses_and_carries_speakers(gateway) -> None:
    document = gateway.client().audio.transcriptions.create(
        model="m", file=FILE, response_format="srt", extra_body={"diarize": True}
    )
    cues = list(srt.parse(document))
    assert [(c.index, c.start.total_seconds(), c.end.total_seconds(), c.content) for c in cues] == [
        (1, 0.0, 0.9, "SPEAKER_00: Hello there."),
        (2, 1.6, 2.3, "SPEAKER_01: Hi back."),
        (3, 4.5, 4.9, "SPEAKER_00: Bye."),
    ]


def test_vtt_parses_with_voice_tags(gateway) -> None:
    client = gateway.client()
    plain = client.audio.transcriptions.create(model="m", file=FILE, response_format="vtt")
    assert plain == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.300\nHello there. Hi back.\n\n"
        "00:00:04.500 --> 00:00:04.900\nBye.\n"
    )
    voiced = client.audio.transcriptions.create(
        model="m", file=FILE, response_format="vtt", extra_body={"diarize": True}
    )
    assert [(c.voice, c.text, c.start, c.end) for c in webvtt.from_string(voiced)] == [
        ("SPEAKER_00", "Hello there.", "00:00:00.000", "00:00:00.900"),
        ("SPEAKER_01", "Hi back.", "00:00:01.600", "00:00:02.300"),
        ("SPEAKER_00", "Bye.", "00:00:04.500", "00:00:04.900"),
    ]


def test_verbose_json_with_words_segments_and_speakers(gateway) -> None:
    raw = gateway.client().audio.transcriptions.with_raw_response.create(
        model="whisper-1",
        file=FILE,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        extra_body={"diarize": True},
    )
    verbose = raw.parse()
    assert isinstance(verbose, openai.types.audio.TranscriptionVerbose)
    assert (verbose.text, verbose.language, verbose.duration) == (TEXT, "en", 5.0)
    assert verbose.model_extra["task"] == "transcribe"
    assert [(s.id, s.start, s.end, s.text, s.model_extra["speaker"]) for s in verbose.segments] == (
        SEGMENTS_WITH_SPEAKERS
    )
    assert [(w.word, w.start, w.end, w.model_extra["speaker"]) for w in verbose.words] == WORDS_WITH_SPEAKERS
    first = verbose.segments[0]
    assert (first.seek, first.tokens, first.temperature, first.avg_logprob) == (0, [], 0.0, 0.0)
    assert (first.compression_ratio, first.no_speech_prob) == (0.0, 0.0)
    assert raw.headers["x-parakeet-model"] == f"{TRANSCRIPTION_MODEL} + {DIARIZATION_MODEL}"
    (request,) = gateway.backends.diarize_requests
    assert request.exclusive and not request.HasField("num_speakers")


def test_verbose_json_granularities_pick_segments_and_words(gateway) -> None:
    client = gateway.client()
    default = client.audio.transcriptions.create(model="m", file=FILE, response_format="verbose_json")
    assert default.words is None
    assert [(s.text, s.model_extra["speaker"]) for s in default.segments] == [
        ("Hello there. Hi back.", None),
        ("Bye.", None),
    ]
    words_only = client.audio.transcriptions.create(
        model="m", file=FILE, response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert words_only.segments is None
    assert [w.word for w in words_only.words] == ["Hello", "there.", "Hi", "back.", "Bye."]
    assert {w.model_extra["speaker"] for w in words_only.words} == {None}


def test_extensions_and_openai_fields_reach_the_orchestrator(gateway) -> None:
    raw = gateway.client().audio.transcriptions.with_raw_response.create(
        model="whisper-1",
        file=FILE,
        language="en",
        prompt="a glossary the model cannot use",
        temperature=0.3,
        extra_body={"diarize": True, "num_speakers": 2, "min_speakers": 1, "max_speakers": 3},
        extra_headers={"x-request-id": "req-42"},
    )
    assert raw.parse().text == TEXT
    assert raw.headers["x-parakeet-ignored"] == "prompt, temperature"
    assert raw.headers["x-request-id"] == "req-42"
    (diarize,) = gateway.backends.diarize_requests
    assert (diarize.num_speakers, diarize.min_speakers, diarize.max_speakers) == (2, 1, 3)
    (transcribe,) = gateway.backends.transcribe_requests
    assert transcribe.language == "en"
    (metadata,) = gateway.backends.metadata
    assert metadata["x-request-id"] == "req-42"
    assert metadata["authorization"] == "Bearer sk-anything"


def test_plain_form_fields_work_without_the_openai_client(gateway) -> None:
    """curl-style: granularities without brackets, booleans as "1", an unusable request id replaced."""
    response = httpx.post(
        f"{gateway.url}/v1/audio/transcriptions",
        files={"file": ("call.wav", WAV, "audio/wav")},
        data={"response_format": "verbose_json", "timestamp_granularities": "word", "diarize": "1"},
        headers={"x-request-id": "not a token"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(w["word"], w["speaker"]) for w in body["words"]] == [
        (w, s) for w, _, _, s in WORDS_WITH_SPEAKERS
    ]
    assert "segments" not in body
    assert len(response.headers["x-request-id"]) == 32
    assert "authorization" not in gateway.backends.metadata[0]


def test_rttm_extension_needs_diarize(gateway) -> None:
    client = gateway.client()
    rttm = client.audio.transcriptions.create(
        model="m", file=FILE, response_format="rttm", extra_body={"diarize": True}
    )
    assert rttm.splitlines() == [
        "SPEAKER audio 1 0.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER audio 1 1.500 1.000 <NA> <NA> SPEAKER_01 <NA> <NA>",
        "SPEAKER audio 1 4.400 0.600 <NA> <NA> SPEAKER_00 <NA> <NA>",
    ]
    calls = len(gateway.backends.transcribe_requests)
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.transcriptions.create(model="m", file=FILE, response_format="rttm")
    assert refused.value.body["message"] == (
        "response_format rttm lists speaker turns: set diarize=true, or use one of: "
        "json, verbose_json, text, srt, vtt, diarized_json"
    )
    assert refused.value.body["reason"] == "UNSUPPORTED_FORMAT"
    assert len(gateway.backends.transcribe_requests) == calls  # refused before any call


def test_models_list_and_retrieve(gateway) -> None:
    client = gateway.client()
    models = client.models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [(TRANSCRIPTION_MODEL, "model", "nvidia")]
    assert client.models.retrieve(TRANSCRIPTION_MODEL).id == TRANSCRIPTION_MODEL
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("whisper-1")
    assert missing.value.body["code"] == "not_found" and missing.value.body["param"] == "model"


class Recording(OrchestratorServicer):
    """The real orchestrator, keeping every OrchestrateRequest the gateway sends it."""

    def __init__(self, backends: InProcessBackends) -> None:
        super().__init__(backends)
        self.requests: list[orchestrator_pb2.OrchestrateRequest] = []

    def Orchestrate(
        self, request: orchestrator_pb2.OrchestrateRequest, context: Any
    ) -> orchestrator_pb2.OrchestrateResponse:
        self.requests.append(request)
        return super().Orchestrate(request, context)


def test_speakers_optional_and_timestamps_reach_the_orchestrate_request(start_gateway) -> None:
    scripted = Scripted()

    def diarization_down(request: Any, context: Any) -> Any:
        raise ServiceUnavailable("the diarization backend is down", reason="BACKEND_UNAVAILABLE")

    servicer = Recording(InProcessBackends(scripted.transcribe, diarization_down, scripted.warm_up))
    gateway = start_gateway(servicer=servicer)
    raw = gateway.client().audio.transcriptions.with_raw_response.create(
        model="m",
        file=FILE,
        response_format="verbose_json",
        extra_body={"diarize": True, "speakers_optional": True, "timestamps": False},
    )
    (request,) = servicer.requests
    assert (request.diarize, request.speakers_optional) == (True, True)
    assert request.HasField("timestamps") and request.timestamps is False
    body = raw.parse()
    assert body.text == TEXT and body.segments is None
    assert raw.headers["x-parakeet-warnings"] == (
        "speakers are missing: diarization failed (UNAVAILABLE: the diarization backend is down)"
    )
    gateway.client().audio.transcriptions.create(model="m", file=FILE)
    assert servicer.requests[1].timestamps is True and servicer.requests[1].speakers_optional is False
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.client().audio.transcriptions.create(
            model="m", file=FILE, timestamp_granularities=["segment"], extra_body={"timestamps": False}
        )
    assert refused.value.body["param"] == "timestamps"
    assert len(servicer.requests) == 2


def test_hotwords_and_multichannel_reach_the_transcription(gateway) -> None:
    """Extensions: hotwords as PHRASE[:BOOST] (bracketed or plain, repeated), multichannel."""
    response = httpx.post(
        f"{gateway.url}/v1/audio/transcriptions",
        files={"file": FILE},
        data={"hotwords[]": ["Kubernetes:2", "Ada Lovelace"], "hotwords": "ratio", "multichannel": "true"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (transcribe,) = gateway.backends.transcribe_requests
    assert [(h.phrase, h.HasField("boost"), h.boost) for h in transcribe.hotwords] == [
        ("Kubernetes", True, 2.0),
        ("Ada Lovelace", False, 0.0),
        ("ratio", False, 0.0),
    ]
    assert transcribe.multichannel is True


def test_multichannel_is_refused_with_stream(gateway) -> None:
    """A live stream is one mixed channel (hotwords do go live: tests/gateway/test_known_speakers.py)."""
    response = httpx.post(
        f"{gateway.url}/v1/audio/transcriptions",
        files={"file": FILE},
        data={"stream": "true", "multichannel": "true"},
        timeout=30,
    )
    error = response.json()["error"]
    assert (response.status_code, error["reason"], error["param"]) == (400, "INVALID_FIELD", "multichannel")
    assert error["message"] == (
        "multichannel is not available with stream=true (a live stream is one mixed channel); "
        "leave stream out to use it"
    )
    assert gateway.backends.transcribe_requests == []
