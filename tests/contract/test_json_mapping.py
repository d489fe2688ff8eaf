"""The JSON shapes existing clients send and read map onto the proto contract unchanged."""

from __future__ import annotations

import base64

import pytest

from parakeet.formats import names
from parakeet.runpod import request_to_json, response_from_json, response_to_json
from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, transcription_pb2
from parakeet_server.core.context import CallContext
from parakeet_server.core.errors import InvalidRequest, Unimplemented
from parakeet_server.core.runpod_shim import parse_job_input, run_job

WAV_BYTES = b"RIFF\x24\x00\x00\x00WAVEfmt "


def test_existing_transcription_input_maps_every_field() -> None:
    request = parse_job_input(
        {
            "audio": "https://example.com/call.mp3",
            "audio_format": "mp3",
            "language": "en",
            "response_format": "srt",
            "timestamps": True,
            "word_timestamps": False,
            "diarization_segments": [{"start": 0.0, "end": 2.5, "speaker": "SPEAKER_00"}],
        },
        transcription_pb2.TranscribeRequest,
    )
    assert request.audio.uri == "https://example.com/call.mp3"
    assert request.audio.format == "mp3"
    assert request.language == "en"
    assert request.response_format == audio_pb2.RESPONSE_FORMAT_SRT
    assert request.HasField("timestamps") and request.timestamps is True
    assert request.HasField("word_timestamps") and request.word_timestamps is False
    assert [(t.start, t.end, t.speaker) for t in request.diarization_segments] == [(0.0, 2.5, "SPEAKER_00")]


def test_existing_orchestrator_input_with_base64_audio() -> None:
    request = parse_job_input(
        {
            "audio": base64.b64encode(WAV_BYTES).decode(),
            "diarize": True,
            "response_format": "json",
            "num_speakers": 2,
        },
        orchestrator_pb2.OrchestrateRequest,
    )
    assert request.audio.content == WAV_BYTES
    assert request.diarize is True
    assert request.num_speakers == 2
    assert not request.HasField("min_speakers")
    assert request.response_format == audio_pb2.RESPONSE_FORMAT_JSON


def test_data_uri_base64_is_accepted() -> None:
    data_uri = "data:audio/wav;base64," + base64.b64encode(WAV_BYTES).decode()
    request = parse_job_input({"audio": data_uri}, diarization_pb2.DiarizeRequest)
    assert request.audio.content == WAV_BYTES


def test_structured_audio_object_is_accepted() -> None:
    request = parse_job_input(
        {"audio": {"uri": "http://example.com/a.wav"}, "audio_format": "wav"}, diarization_pb2.DiarizeRequest
    )
    assert request.audio.uri == "http://example.com/a.wav"
    assert request.audio.format == "wav"


def test_diarization_response_has_the_shape_existing_clients_read() -> None:
    response = diarization_pb2.DiarizeResponse(
        segments=[audio_pb2.SpeakerTurn(start=0.0, end=2.5, speaker="SPEAKER_00")],
        num_speakers=2,
        duration=5.0,
    )
    document = response_to_json(response)
    assert document["segments"] == [{"start": 0.0, "end": 2.5, "speaker": "SPEAKER_00"}]
    assert document["num_speakers"] == 2
    assert document["duration"] == 5.0
    assert document["response_format"] == "json"


def test_response_format_short_names() -> None:
    assert names() == ["json", "verbose_json", "text", "srt", "vtt", "rttm"]
    document = response_to_json(
        transcription_pb2.TranscribeResponse(response_format=audio_pb2.RESPONSE_FORMAT_VTT)
    )
    assert document["response_format"] == "vtt"


@pytest.mark.parametrize(
    ("job_input", "message_part"),
    [
        ("https://example.com/a.wav", 'needs an "input" object'),
        ({}, "'audio' is required"),
        ({"audio": "not base64 !!"}, "neither"),
        ({"audio": ""}, "'audio' is empty"),
        ({"audio": 42}, "'audio' must be a string"),
        (
            {"audio": "https://x/a.wav", "response_format": "docx"},
            "the diarization service has no response_format 'docx'; use one of: json, verbose_json, rttm",
        ),
        ({"audio": "https://x/a.wav", "num_speakers": "two"}, "num_speakers"),
        ({"audio": "https://x/a.wav", "colour": "blue"}, 'no field named "colour"'),
        ({"audio": "https://x/a.wav", "audio_format": 3}, "'audio_format' must be a string"),
    ],
)
def test_bad_job_input_is_an_actionable_invalid_request(job_input: object, message_part: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_job_input(job_input, diarization_pb2.DiarizeRequest)
    assert message_part in raised.value.message


def _unimplemented(
    request: diarization_pb2.DiarizeRequest, context: CallContext
) -> diarization_pb2.DiarizeResponse:
    raise Unimplemented("Diarize is not implemented by this server yet")


def _crash(request: diarization_pb2.DiarizeRequest, context: CallContext) -> diarization_pb2.DiarizeResponse:
    raise RuntimeError("secret internal detail")


def test_run_job_maps_service_errors_to_error_objects() -> None:
    job = {"id": "j1", "input": {"audio": "https://x/a.wav"}}
    assert run_job(job, diarization_pb2.DiarizeRequest, _unimplemented) == {
        "error": "Diarize is not implemented by this server yet",
        "error_code": "UNIMPLEMENTED",
        "reason": "UNIMPLEMENTED",
    }
    assert run_job({"id": "j2", "input": {}}, diarization_pb2.DiarizeRequest, _unimplemented) == {
        "error": "'audio' is required: an http(s) URL or base64-encoded audio",
        "error_code": "INVALID_ARGUMENT",
        "reason": "AUDIO_MISSING",
    }


def test_run_job_hides_unexpected_exceptions() -> None:
    result = run_job(
        {"id": "j3", "input": {"audio": "https://x/a.wav"}}, diarization_pb2.DiarizeRequest, _crash
    )
    assert result == {
        "error": "internal error; see the worker log",
        "error_code": "INTERNAL",
        "reason": "INTERNAL",
    }


def test_request_to_json_is_the_inverse_of_parse_job_input() -> None:
    request = transcription_pb2.TranscribeRequest(
        audio=audio_pb2.Audio(content=WAV_BYTES, format="wav"),
        word_timestamps=True,
        response_format=audio_pb2.RESPONSE_FORMAT_VTT,
        diarization_segments=[audio_pb2.SpeakerTurn(start=0.5, end=1.0, speaker="SPEAKER_01")],
    )
    document = request_to_json(request)
    assert document["audio"] == base64.b64encode(WAV_BYTES).decode()
    assert document["audio_format"] == "wav"
    assert document["response_format"] == "vtt"
    assert parse_job_input(document, transcription_pb2.TranscribeRequest) == request
    by_url = orchestrator_pb2.OrchestrateRequest(
        audio=audio_pb2.Audio(uri="https://example.com/a.mp3"), diarize=True
    )
    assert request_to_json(by_url) == {"audio": "https://example.com/a.mp3", "diarize": True}


def test_response_from_json_reads_what_response_to_json_wrote() -> None:
    response = diarization_pb2.DiarizeResponse(
        segments=[audio_pb2.SpeakerTurn(start=0.0, end=2.5, speaker="SPEAKER_00")],
        num_speakers=1,
        duration=2.5,
        response_format=audio_pb2.RESPONSE_FORMAT_RTTM,
        document="SPEAKER audio 1 0.000 2.500 <NA> <NA> SPEAKER_00 <NA> <NA>\n",
    )
    assert response_from_json(response_to_json(response), diarization_pb2.DiarizeResponse) == response


def test_error_messages_quoting_huge_values_are_cut_to_a_readable_size() -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_job_input(
            {"audio": "https://x/a.wav", "response_format": "x" * 1_000_000}, diarization_pb2.DiarizeRequest
        )
    assert len(raised.value.message) == InvalidRequest.MAX_MESSAGE_CHARS
    assert raised.value.message.startswith("the diarization service has no response_format 'xxx")
    assert " characters cut) ... " in raised.value.message
    assert raised.value.message.endswith("'; use one of: json, verbose_json, rttm")


def test_hotwords_as_objects_or_plain_phrases() -> None:
    request = parse_job_input(
        {
            "audio": "https://example.com/call.mp3",
            "hotwords": [{"phrase": "Kubernetes", "boost": 3}, "Ada Lovelace", "ratio 16:9"],
        },
        orchestrator_pb2.OrchestrateRequest,
    )
    assert list(request.hotwords) == [
        audio_pb2.Hotword(phrase="Kubernetes", boost=3.0),
        audio_pb2.Hotword(phrase="Ada Lovelace"),
        audio_pb2.Hotword(phrase="ratio 16:9"),  # a plain phrase is taken whole: no boost parsing
    ]
    with pytest.raises(InvalidRequest, match="hotwords"):
        parse_job_input(
            {"audio": "https://example.com/a.mp3", "hotwords": [7]}, orchestrator_pb2.OrchestrateRequest
        )
