"""The Python client: request builders, and both clients against a real in-process gRPC server."""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest
import srt
from google.protobuf import json_format

import parakeet
from parakeet import (
    AsyncParakeetClient,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ParakeetClient,
    ParakeetError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    UnsupportedFormat,
    audio_message,
    diarize_request,
    formats,
    orchestrate_request,
    transcribe_request,
)
from parakeet.v1 import audio_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from parakeet_server.core.grpc_server import HostedService
from parakeet_server.core.merge import with_overlap
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.orchestrator.server import SERVICE_NAME as ORCHESTRATOR
from parakeet_server.transcription import server as transcription_server
from tests.client.conftest import SERVER_HAS_AUTH, SPEECH, WAV, needs_server_auth
from tests.support.audio import sweep, wav_bytes
from tests.support.servers import free_port, wait_for_health

BAD_AUDIO = b"not audio at all" * 50
MODEL = "parakeet-tdt-tiny-v1.nemo"
PIPELINE = "speaker-diarization-3.1-local"


# -- request builders (no server) ----------------------------------------------------------------


def test_public_api_is_exported() -> None:
    assert set(parakeet.__all__) <= set(dir(parakeet))
    assert {"ParakeetClient", "AsyncParakeetClient", "ParakeetError", "audio_message"} <= set(
        parakeet.__all__
    )


def test_builders_read_formats_through_the_one_table() -> None:
    assert formats.names() == ["json", "verbose_json", "text", "srt", "vtt", "rttm"]
    assert orchestrate_request(b"x", response_format="srt").response_format == audio_pb2.RESPONSE_FORMAT_SRT
    assert (
        transcribe_request(b"x", response_format=" Verbose_JSON ").response_format
        == audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON
    )
    assert diarize_request(b"x", response_format=audio_pb2.RESPONSE_FORMAT_RTTM).response_format == 6
    with pytest.raises(
        UnsupportedFormat,
        match=r"^the orchestrator service has no response_format 'docx'; use one of: json, verbose_json, "
        r"text, srt, vtt$",
    ) as raised:
        orchestrate_request(b"x", response_format="docx")
    assert isinstance(raised.value, ValueError) and raised.value.reason == "UNSUPPORTED_FORMAT"
    with pytest.raises(UnsupportedFormat, match="no response_format 42"):
        diarize_request(b"x", response_format=42)
    # Each builder checks against its own RPC, with the server's message for that RPC.
    with pytest.raises(UnsupportedFormat, match=r"^the diarization service has no response_format srt \("):
        diarize_request(b"x", response_format="srt")
    with pytest.raises(UnsupportedFormat, match=r"^the transcription service has no response_format rttm \("):
        transcribe_request(b"x", response_format="rttm")
    assert orchestrate_request(b"x", response_format="rttm", diarize=True).response_format == 6
    with pytest.raises(
        UnsupportedFormat, match=r"^response_format rttm lists speaker turns: set diarize=true"
    ):
        orchestrate_request(b"x", response_format="rttm")


def test_audio_message_reads_paths_and_passes_bytes_urls_and_messages(tmp_path) -> None:
    path = tmp_path / "call.FLAC"
    path.write_bytes(b"fLaC-bytes")
    assert audio_message(path) == audio_pb2.Audio(content=b"fLaC-bytes", format="flac")
    assert audio_message(str(path), format="ogg") == audio_pb2.Audio(content=b"fLaC-bytes", format="ogg")
    assert audio_message(b"raw") == audio_pb2.Audio(content=b"raw")
    assert audio_message(memoryview(b"raw")) == audio_pb2.Audio(content=b"raw")
    assert audio_message(" https://example.com/a.mp3") == audio_pb2.Audio(uri="https://example.com/a.mp3")
    original = audio_pb2.Audio(uri="http://example.com/a")
    assert audio_message(original, format="mp3") == audio_pb2.Audio(uri="http://example.com/a", format="mp3")
    assert original.format == ""
    with pytest.raises(FileNotFoundError):
        audio_message(tmp_path / "missing.wav")


def _as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_builders_leave_unset_options_off_the_wire() -> None:
    assert _as_dict(orchestrate_request(b"a")) == {
        "audio": {"content": "YQ=="},
        "response_format": "RESPONSE_FORMAT_JSON",
    }
    assert _as_dict(
        orchestrate_request(
            "https://x.test/a.wav",
            diarize=True,
            response_format="vtt",
            language="en",
            word_timestamps=True,
            timestamps=False,
            num_speakers=2,
            min_speakers=1,
            max_speakers=3,
        )
    ) == {
        "audio": {"uri": "https://x.test/a.wav"},
        "diarize": True,
        "response_format": "RESPONSE_FORMAT_VTT",
        "language": "en",
        "word_timestamps": True,
        "timestamps": False,
        "num_speakers": 2,
        "min_speakers": 1,
        "max_speakers": 3,
    }
    turn = audio_pb2.SpeakerTurn(start=0.0, end=1.0, speaker="A")
    assert list(transcribe_request(b"a", diarization_segments=[turn]).diarization_segments) == [turn]
    assert not diarize_request(b"a").HasField("num_speakers")
    assert diarize_request(b"a", exclusive=True, max_speakers=4, response_format="rttm").max_speakers == 4


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhausted),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPrecondition),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated),
        (grpc.StatusCode.UNIMPLEMENTED, Unimplemented),
        (grpc.StatusCode.INTERNAL, Internal),
        (grpc.StatusCode.NOT_FOUND, ParakeetError),
    ],
)
def test_each_status_code_has_its_error_type(code, error_type) -> None:
    error = ParakeetError.for_code(code, "what to change")
    assert type(error) is error_type
    assert (error.code, error.details, str(error)) == (code, "what to change", "what to change")


# -- the sync client against the in-process server -----------------------------------------------


def test_path_bytes_and_url_audio_get_the_orchestrators_answer(
    client, audio_files, http_audio, expected
) -> None:
    want = expected(WAV, word_timestamps=True)
    assert len(want.words) > 5 and want.text
    assert (want.model, want.duration, want.language, want.num_speakers) == (MODEL, 4.0, "en", 0)
    assert want.document == "" and list(want.speaker_turns) == []
    for source in (audio_files["wav"], str(audio_files["wav"]), WAV, f"{http_audio}/sweep.wav"):
        assert client.transcribe(source, word_timestamps=True) == want, source


def test_transcribe_only_is_the_transcription_half_of_the_orchestrator(client, expected) -> None:
    want = expected(WAV, word_timestamps=True)
    only = client.transcribe_only(WAV, word_timestamps=True)
    assert (only.text, list(only.words), list(only.segments)) == (
        want.text,
        list(want.words),
        list(want.segments),
    )
    assert (only.model, only.duration) == (MODEL, 4.0)


def test_diarize_attributes_words_to_the_diarization_services_turns(client) -> None:
    result = client.transcribe(
        SPEECH, diarize=True, num_speakers=2, word_timestamps=True, response_format="srt"
    )
    turns = client.diarize(SPEECH, num_speakers=2, exclusive=True)
    assert result.num_speakers == turns.num_speakers == 2
    # The answer's turns: the exclusive ones the words go by, plus the second voices where two speak.
    assert list(result.speaker_turns) == with_overlap(turns.segments, turns.overlap_segments)
    assert (result.model, turns.model) == (f"{MODEL} + {PIPELINE}", PIPELINE)
    split = client.transcribe_only(SPEECH, word_timestamps=True, diarization_segments=turns.segments)
    assert list(result.words) == list(split.words)
    assert {word.speaker for word in result.words} == {"SPEAKER_00", "SPEAKER_01"}
    cues = list(srt.parse(result.document))
    assert [cue.content.split(": ", 1)[0] for cue in cues] == [segment.speaker for segment in result.segments]


def test_health_reports_each_hosted_service(client) -> None:
    assert client.health() == "SERVING"
    assert client.health(ORCHESTRATOR) == "SERVING"
    with pytest.raises(ParakeetError) as raised:
        client.health("parakeet.v1.NoSuchService")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("audio", "options", "message"),
    [
        (BAD_AUDIO, {}, "could not decode the audio"),
        (WAV, {"diarize": True, "num_speakers": 0}, "num_speakers must be at least 1 (got 0)"),
        (WAV, {"language": "de"}, "language 'de' is not supported"),
        ("http://127.0.0.1:9/a.wav", {}, "resolves to a non-public address"),
    ],
)
def test_bad_requests_raise_invalid_argument_with_the_servers_message(
    client, audio, options, message
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        client.transcribe(audio, **options)
    error = raised.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details and str(error) == error.details
    assert error.__cause__ is None and error.__suppress_context__
    if SERVER_HAS_AUTH:
        assert re.fullmatch(r"[0-9a-f]{32}", error.request_id or ""), error.request_id


def test_a_short_deadline_is_deadline_exceeded(client) -> None:
    with pytest.raises(DeadlineExceeded):
        client.transcribe(wav_bytes(sweep(30.0)), timeout=0.05)


def test_no_server_is_unavailable() -> None:
    with ParakeetClient(f"127.0.0.1:{free_port()}", timeout=5.0) as client, pytest.raises(Unavailable):
        client.transcribe(WAV)


def test_a_service_the_server_does_not_host_is_unimplemented(start_host, transcription_servicer) -> None:
    host = start_host([transcription_server.hosted_service(transcription_servicer)])
    wait_for_health(host.address)
    with ParakeetClient(host.address, timeout=30.0) as client:
        with pytest.raises(Unimplemented):
            client.transcribe(WAV)
        assert client.transcribe_only(WAV).model == MODEL


class _RecordingOrchestrator(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Answers every call with an empty transcript and remembers the metadata it came with."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def Orchestrate(self, request, context):
        self.metadata.append(dict(context.invocation_metadata()))
        return orchestrator_pb2.OrchestrateResponse(text="ok")


def test_the_token_travels_as_a_bearer_authorization_header(start_host) -> None:
    recorder = _RecordingOrchestrator()

    def register(server: grpc.Server) -> None:
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(recorder, server)

    host = start_host([HostedService(name=ORCHESTRATOR, register=register)])
    wait_for_health(host.address)
    with ParakeetClient(host.address, token="s3cret", timeout=10.0) as client:
        assert client.transcribe(b"x").text == "ok"
    with ParakeetClient(host.address, timeout=10.0) as client:
        client.transcribe(b"x")

    async def call_async() -> str:
        async with AsyncParakeetClient(host.address, token="async-s3cret", timeout=10.0) as client:
            return (await client.transcribe(b"x")).text

    assert asyncio.run(call_async()) == "ok"
    assert [m.get("authorization") for m in recorder.metadata] == [
        "Bearer s3cret",
        None,
        "Bearer async-s3cret",
    ]


def without_confidences(
    response: orchestrator_pb2.OrchestrateResponse,
) -> orchestrator_pb2.OrchestrateResponse:
    copy = orchestrator_pb2.OrchestrateResponse()
    copy.CopyFrom(response)
    for word in copy.words:
        word.ClearField("confidence")
    return copy


@needs_server_auth
def test_a_server_that_wants_a_token_refuses_calls_without_the_right_one(start_host, orchestrator) -> None:
    host = start_host([orchestrator_server.hosted_service(orchestrator)], auth_token="s3cret")
    wait_for_health(host.address)
    for token in (None, "wrong"):
        with (
            ParakeetClient(host.address, token=token, timeout=30.0) as client,
            pytest.raises(Unauthenticated) as raised,
        ):
            client.transcribe(WAV)
        assert raised.value.details == "this server needs an 'authorization: Bearer <token>' header"
    with ParakeetClient(host.address, token="s3cret", timeout=30.0) as client:
        assert client.transcribe(WAV).model == MODEL
        assert client.health(ORCHESTRATOR) == "SERVING"


# -- the asyncio client ---------------------------------------------------------------------------


def test_async_client_gives_the_same_answers_and_errors(address, expected) -> None:
    async def run() -> tuple:
        async with AsyncParakeetClient(address, timeout=60.0) as client:
            health = await client.health(ORCHESTRATOR)
            concurrent = await asyncio.gather(
                client.transcribe(WAV, word_timestamps=True, response_format="vtt"),
                client.transcribe_only(WAV, response_format="text"),
                client.diarize(WAV, response_format="rttm"),
            )
            with pytest.raises(InvalidArgument) as raised:
                await client.transcribe(BAD_AUDIO)
            return health, *concurrent, raised.value

    health, result, only, turns, error = asyncio.run(run())
    assert health == "SERVING"
    # Calls made at once share a forward pass, which moves word confidences in the 7th digit.
    want = expected(WAV, word_timestamps=True, response_format="vtt")
    assert [c.confidence for c in result.words] == pytest.approx([c.confidence for c in want.words], rel=1e-4)
    assert without_confidences(result) == without_confidences(want)
    assert result.document.startswith("WEBVTT\n")
    assert only.document == expected(WAV, response_format="text").document != ""
    assert turns.num_speakers == len({turn.speaker for turn in turns.segments}) >= 1
    assert turns.document.count("\n") == len(turns.segments)
    assert turns.document.startswith(f"SPEAKER audio 1 {turns.segments[0].start:.3f} ")
    assert "could not decode the audio" in error.details
