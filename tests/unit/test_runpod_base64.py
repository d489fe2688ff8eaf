"""Base64 in a RunPod job is decoded strictly (issue #14, item 8).

protobuf's json_format skips characters outside the base64 alphabet: `{"audio": {"content":
"!!!"}}` used to reach the servicer as 0 bytes ("audio is empty") and `"UklG!!!RiQ="` as other
bytes than were sent. Now every bytes field, in any shape, is checked by the one strict decoder
(parakeet_server.core.base64_strict), and the error names the field and what is wrong with it.
"""

from __future__ import annotations

import base64
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2

from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, transcription_pb2
from parakeet_server.core.base64_strict import InvalidBase64, decode_base64_field, decode_base64_strict
from parakeet_server.core.context import CallContext
from parakeet_server.core.errors import InvalidRequest
from parakeet_server.core.runpod_shim import run_job, with_strict_bytes

# Bytes whose base64 uses both of the alphabets' last two characters (+/ or -_) and padding.
RAW = b"RIFF\xfb\xff\xbf\x00WAVE\xfe\xfa>?"
STANDARD = base64.b64encode(RAW).decode()
URL_SAFE = base64.urlsafe_b64encode(RAW).decode()
REQUEST_TYPES = [
    transcription_pb2.TranscribeRequest,
    diarization_pb2.DiarizeRequest,
    orchestrator_pb2.OrchestrateRequest,
]


class Recorder:
    """A servicer that keeps the requests it is handed and answers with an empty response."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def __call__(self, request: Any, context: CallContext) -> Any:
        self.requests.append(request)
        return diarization_pb2.DiarizeResponse()


def test_the_forms_the_json_mapping_allows_decode_to_the_bytes_sent() -> None:
    assert "+" in STANDARD and "/" in STANDARD and STANDARD.endswith("=")
    for text in (
        STANDARD,
        URL_SAFE,
        STANDARD.rstrip("="),
        URL_SAFE.rstrip("="),
        base64.encodebytes(RAW).decode(),  # wrapped over lines, as `base64` without -w0 writes it
        STANDARD[:8] + "\r\n" + STANDARD[8:],
        STANDARD.encode(),
    ):
        assert decode_base64_strict(text) == RAW, text
    assert decode_base64_strict("") == b""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("!!!", "'!' at character 0 is not a base64 character"),
        ("UklG!!!RiQ=", "'!' at character 4 is not a base64 character"),
        ("UklGRiQ=\x00", "'\\x00' at character 8 is not a base64 character"),
        ("UklGRé==", "'é' at character 5 is not a base64 character"),
        (
            "UklGR",
            "the number of base64 characters (5) is one more than a multiple of 4, which no bytes "
            "encode: the text is cut short or has a stray character",
        ),
        ("UklGRiQ==", "it ends in 2 '=' where 1 belong"),
        ("UklGRiQA=", "it ends in 1 '=' where 0 belong"),
        ("Ukl=GRiQ", "it has '=' padding before its end"),
        ("Ukl+GRi_", "it mixes the standard (+/) and URL-safe (-_) base64 alphabets"),
    ],
)
def test_anything_else_is_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(InvalidBase64) as raised:
        decode_base64_strict(text)
    assert str(raised.value) == problem
    with pytest.raises(InvalidRequest) as named:
        decode_base64_field(text, "audio.content")
    assert named.value.message == f"'audio.content' is not valid base64: {problem}"
    assert (named.value.code, named.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_BASE64")


@pytest.mark.parametrize("request_type", REQUEST_TYPES, ids=lambda t: t.DESCRIPTOR.name)
@pytest.mark.parametrize(
    ("audio", "error"),
    [
        (
            {"content": "!!!"},
            "'audio.content' is not valid base64: '!' at character 0 is not a base64 character",
        ),
        (
            {"content": "UklG!!!RiQ="},
            "'audio.content' is not valid base64: '!' at character 4 is not a base64 character",
        ),
        (
            {"content": "UklG RiQ= extra"},
            "'audio.content' is not valid base64: it has '=' padding before its end",
        ),
        (
            "UklG!!!RiQ=",
            "'audio' must be an http(s) URL or base64-encoded audio; the string given is neither "
            "(as base64: '!' at character 4 is not a base64 character)",
        ),
    ],
)
def test_a_job_with_invalid_base64_never_reaches_the_servicer(
    request_type: Any, audio: Any, error: str
) -> None:
    servicer = Recorder()
    output = run_job({"id": "b64", "input": {"audio": audio}}, request_type, servicer)
    # A bytes field that is not base64 is INVALID_BASE64; a bare string that is neither a URL
    # nor base64 is a wrong value of 'audio' (it may be a file:// path), INVALID_FIELD.
    reason = "INVALID_FIELD" if error.startswith("'audio' must be") else "INVALID_BASE64"
    assert output == {"error": error, "error_code": "INVALID_ARGUMENT", "reason": reason}
    assert servicer.requests == []


@pytest.mark.parametrize(
    "audio",
    [
        {"content": STANDARD},
        {"content": URL_SAFE},
        {"content": URL_SAFE.rstrip("=")},
        {"content": base64.encodebytes(RAW).decode()},
        STANDARD,
        URL_SAFE.rstrip("="),
        base64.encodebytes(RAW).decode(),
        "data:audio/wav;base64," + STANDARD,
    ],
)
def test_valid_base64_in_any_shape_reaches_the_servicer_as_the_bytes_sent(audio: Any) -> None:
    servicer = Recorder()
    output = run_job(
        {"id": "b64", "input": {"audio": audio, "audio_format": "wav"}},
        diarization_pb2.DiarizeRequest,
        servicer,
    )
    assert "error" not in output
    assert [request.audio for request in servicer.requests] == [audio_pb2.Audio(content=RAW, format="wav")]


def test_every_bytes_field_is_checked_however_deep() -> None:
    """No request of the contract has a bytes field besides Audio.content yet; the check walks
    any message, repeated and nested fields included, so one added later is covered too."""
    descriptor = descriptor_pb2.FileDescriptorSet.DESCRIPTOR
    document = {
        "file": [{"options": {"uninterpretedOption": [{"stringValue": STANDARD}, {"stringValue": "QQ!"}]}}]
    }
    with pytest.raises(InvalidRequest) as raised:
        with_strict_bytes(document, descriptor)
    assert raised.value.message == (
        "'file[0].options.uninterpreted_option[1].string_value' is not valid base64: "
        "'!' at character 2 is not a base64 character"
    )
    wrapped = {
        "file": [{"options": {"uninterpretedOption": [{"stringValue": base64.encodebytes(RAW).decode()}]}}]
    }
    checked = with_strict_bytes(wrapped, descriptor)
    assert checked == {"file": [{"options": {"uninterpretedOption": [{"stringValue": STANDARD}]}}]}
    assert (
        wrapped["file"][0]["options"]["uninterpretedOption"][0]["stringValue"] != STANDARD
    )  # not changed in place
