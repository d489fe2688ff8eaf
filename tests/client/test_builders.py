"""Every field of every request message is reachable from the client: the builders take each
one as a keyword, the clients' methods pass each one on, and the CLI sets every
OrchestrateRequest field. A field added to the contract without a way to set it fails here."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from parakeet import (
    AsyncParakeetClient,
    ParakeetClient,
    diarize_request,
    orchestrate_request,
    transcribe_request,
)
from parakeet.cli import _check_usage, _request_options, build_parser
from parakeet.client import DiarizeOptions, OrchestrateOptions, TranscribeOptions, write_voiceprint
from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, transcription_pb2

AUDIO = b"RIFF-bytes"
BUILDERS: dict[type[Message], Callable[..., Message]] = {
    orchestrator_pb2.OrchestrateRequest: orchestrate_request,
    transcription_pb2.TranscribeRequest: transcribe_request,
    diarization_pb2.DiarizeRequest: diarize_request,
}
# Client method -> the builder it must mirror (every builder keyword is a method keyword).
METHODS = {
    "transcribe": orchestrate_request,
    "transcribe_only": transcribe_request,
    "diarize": diarize_request,
}
TURN = audio_pb2.SpeakerTurn(start=0.0, end=1.5, speaker="SPEAKER_00")


def other_value(member: FieldDescriptor, default: Any) -> Any:
    """A value for `member`'s builder argument that differs from the argument's default."""
    if isinstance(default, bool):
        return not default
    if member.is_repeated and member.message_type is not None:
        return {
            "SpeakerTurn": [TURN],
            "Hotword": [audio_pb2.Hotword(phrase="Kubernetes", boost=2.0)],
            "KnownSpeaker": [audio_pb2.KnownSpeaker(name="Alice", reference=audio_pb2.Audio(content=AUDIO))],
        }[member.message_type.name]
    if member.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 0.9
    if member.enum_type is not None:
        return "verbose_json"  # every RPC renders it; the default is json
    if member.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        return 2
    if member.type == FieldDescriptor.TYPE_STRING:
        return "en"
    raise AssertionError(f"no test value for {member.full_name}: extend other_value")


def differs(changed: Message, default: Message, member: FieldDescriptor) -> bool:
    name = member.name
    if member.has_presence and changed.HasField(name) != default.HasField(name):
        return True
    return bool(getattr(changed, name) != getattr(default, name))


def settable_fields(request_type: type[Message]) -> list[FieldDescriptor]:
    return [member for member in request_type.DESCRIPTOR.fields if member.name != "audio"]


@pytest.mark.parametrize("request_type", list(BUILDERS), ids=lambda t: t.DESCRIPTOR.name)
def test_every_request_field_has_a_builder_keyword_that_sets_it(request_type: type[Message]) -> None:
    builder = BUILDERS[request_type]
    parameters = inspect.signature(builder).parameters
    default = builder(AUDIO)
    assert default.audio == audio_pb2.Audio(content=AUDIO)
    for member in settable_fields(request_type):
        assert member.name in parameters, f"{builder.__name__} has no keyword for {member.full_name}"
        value = other_value(member, parameters[member.name].default)
        changed = builder(AUDIO, **{member.name: value})
        assert differs(changed, default, member), f"{builder.__name__}({member.name}={value!r}) set nothing"
    assert set(parameters) == {"audio"} | {member.name for member in settable_fields(request_type)}


def all_options(builder: Callable[..., Message]) -> dict[str, Any]:
    """Every keyword of `builder` at a non-default value."""
    request_type = next(t for t, b in BUILDERS.items() if b is builder)
    parameters = inspect.signature(builder).parameters
    return {
        member.name: other_value(member, parameters[member.name].default)
        for member in settable_fields(request_type)
    }


@pytest.mark.parametrize("method", list(METHODS))
def test_the_blocking_clients_methods_pass_every_field_on(method: str) -> None:
    builder = METHODS[method]
    sent: list[Message] = []
    with ParakeetClient("127.0.0.1:9") as client:
        client._call = lambda _stub, request, _timeout: sent.append(request)  # type: ignore[method-assign]
        getattr(client, method)(AUDIO, **all_options(builder))
    assert sent == [builder(AUDIO, **all_options(builder))]


@pytest.mark.parametrize("method", list(METHODS))
def test_the_async_clients_methods_pass_every_field_on(method: str) -> None:
    builder = METHODS[method]
    sent: list[Message] = []

    async def capture(_stub: object, request: Message, _timeout: object) -> None:
        sent.append(request)

    async def call() -> None:
        async with AsyncParakeetClient("127.0.0.1:9") as client:
            client._call = capture  # type: ignore[method-assign]
            await getattr(client, method)(AUDIO, **all_options(builder))

    asyncio.run(call())
    assert sent == [builder(AUDIO, **all_options(builder))]


def test_the_cli_sets_every_orchestrate_request_field(tmp_path: Path) -> None:
    call = tmp_path / "call.wav"
    call.write_bytes(AUDIO)
    voiceprint = write_voiceprint(
        tmp_path / "alice.voiceprint.json",
        diarization_pb2.EnrollResponse(
            name="Alice", voiceprint=audio_pb2.Voiceprint(embedding=[0.6, 0.8], model="resemblyzer")
        ),
    )
    args = build_parser().parse_args(
        [
            "transcribe",
            str(call),
            "--diarize",
            "--format",
            "verbose_json",
            "--language",
            "en",
            "--word-timestamps",
            "--no-timestamps",
            "--num-speakers",
            "2",
            "--min-speakers",
            "1",
            "--max-speakers",
            "3",
            "--speakers-optional",
            "--speaker",
            str(voiceprint),
            "--speaker-threshold",
            "0.9",
            "--hotword",
            "Ada Lovelace:2",
            "--multichannel",
        ]
    )
    _check_usage(args)  # reads the --speaker files
    request = orchestrate_request(AUDIO, **_request_options(args))
    default = orchestrate_request(AUDIO)
    unset = [
        member.name
        for member in settable_fields(orchestrator_pb2.OrchestrateRequest)
        if not differs(request, default, member)
    ]
    assert unset == [], f"the CLI cannot set {unset}"
    assert (request.timestamps, request.speakers_optional) == (False, True)
    assert request.HasField("timestamps")
    plain = orchestrate_request(AUDIO, **_request_options(build_parser().parse_args(["transcribe", "a.wav"])))
    assert plain == default and not plain.HasField("timestamps")


@pytest.mark.parametrize(
    ("options", "builder"),
    [
        (OrchestrateOptions, orchestrate_request),
        (TranscribeOptions, transcribe_request),
        (DiarizeOptions, diarize_request),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_the_clients_option_types_name_exactly_the_builders_keywords(options: type, builder) -> None:
    """The clients' methods take `**options` typed by these; a keyword missing here is untyped there."""
    assert set(options.__annotations__) == set(inspect.signature(builder).parameters) - {"audio"}
