"""The pure translation functions: form -> OrchestrateRequest, names -> enums."""

from __future__ import annotations

import pytest

from parakeet import formats
from parakeet.v1 import audio_pb2
from parakeet_server.gateway import openai_shapes
from parakeet_server.gateway.errors import GatewayError


def test_form_becomes_one_orchestrate_request() -> None:
    form = openai_shapes.TranscriptionForm(
        audio=b"RIFF",
        response_format=formats.resolve("srt"),
        timestamp_granularities=frozenset({"word"}),
        language="en",
        diarize=True,
        num_speakers=3,
    )
    request = openai_shapes.orchestrate_request(form)
    assert request.audio.content == b"RIFF" and request.audio.format == ""
    assert (request.language, request.diarize, request.response_format) == (
        "en",
        True,
        audio_pb2.RESPONSE_FORMAT_SRT,
    )
    assert request.HasField("timestamps") and request.timestamps
    assert request.word_timestamps
    assert request.num_speakers == 3
    assert not request.HasField("min_speakers") and not request.HasField("max_speakers")
    assert not request.speakers_optional
    plain = openai_shapes.orchestrate_request(openai_shapes.TranscriptionForm(audio=b"x"))
    assert not plain.word_timestamps and not plain.diarize and not plain.HasField("num_speakers")
    assert plain.response_format == audio_pb2.RESPONSE_FORMAT_JSON


@pytest.mark.parametrize(("timestamps", "sent"), [(None, True), (True, True), (False, False)])
def test_extension_fields_become_the_orchestrate_fields_of_their_names(timestamps, sent) -> None:
    form = openai_shapes.TranscriptionForm(audio=b"x", timestamps=timestamps, speakers_optional=True)
    request = openai_shapes.orchestrate_request(form)
    assert request.HasField("timestamps") and request.timestamps is sent
    assert request.speakers_optional is True


def test_timestamps_false_cannot_come_with_segment_granularity() -> None:
    openai_shapes.check_timestamps(False, {"word"})
    openai_shapes.check_timestamps(True, {"segment"})
    with pytest.raises(GatewayError) as raised:
        openai_shapes.check_timestamps(False, {"segment", "word"})
    assert (raised.value.status, raised.value.param) == (400, "timestamps")
    assert raised.value.message == (
        'timestamps=false leaves segments out: drop it, or drop "segment" from timestamp_granularities'
    )


@pytest.mark.parametrize(
    ("given", "name"), [(None, "json"), ("", "json"), (" SRT ", "srt"), ("verbose_json", "verbose_json")]
)
def test_response_format_names(given, name) -> None:
    assert openai_shapes.parse_response_format(given, diarize=False).name == name


def test_unknown_names_are_refused_with_the_param() -> None:
    with pytest.raises(GatewayError) as raised:
        openai_shapes.parse_response_format("diarized_jsonl", diarize=True)
    assert (raised.value.status, raised.value.param) == (400, "response_format")
    assert (raised.value.code, raised.value.reason) == ("invalid_argument", "UNSUPPORTED_FORMAT")
    assert raised.value.message == (
        "the orchestrator service has no response_format 'diarized_jsonl'; "
        "use one of: json, verbose_json, text, srt, vtt, rttm, diarized_json"
    )
    with pytest.raises(GatewayError) as raised:
        openai_shapes.parse_response_format("rttm", diarize=False)
    assert raised.value.message == (
        "response_format rttm lists speaker turns: set diarize=true, or use one of: "
        "json, verbose_json, text, srt, vtt, diarized_json"
    )
    with pytest.raises(GatewayError) as raised:
        openai_shapes.parse_granularities(["word", "sentence"])
    assert raised.value.message == "unknown timestamp_granularities 'sentence'; use word and/or segment"
    assert openai_shapes.parse_granularities(["Word", " segment", ""]) == {"word", "segment"}
