"""Diarize over gRPC (in-process server, real pipeline): fidelity, labels, RTTM, request errors."""

from __future__ import annotations

import json
import re

import grpc
import pytest
from google.protobuf import json_format

from parakeet.v1 import audio_pb2, diarization_pb2, diarization_pb2_grpc
from parakeet_server.core.errors import DeadlineExceeded
from parakeet_server.diarization.servicer import DiarizationServicer
from tests.diarization.helpers import turns_of


def call(address: str, **fields: object) -> diarization_pb2.DiarizeResponse:
    with grpc.insecure_channel(address) as channel:
        stub = diarization_pb2_grpc.DiarizationServiceStub(channel)
        return stub.Diarize(diarization_pb2.DiarizeRequest(**fields), timeout=120)


def refused(address: str, **fields: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(address, **fields)
    return error.value


def test_grpc_diarize_equals_a_direct_pipeline_call(diarization_address, speech, reference) -> None:
    response = call(diarization_address, audio=audio_pb2.Audio(content=speech, format="wav"), num_speakers=2)
    assert turns_of(response.segments) == reference(num_speakers=2)
    assert {turn.speaker for turn in response.segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert response.num_speakers == 2
    assert response.duration == 12.0
    assert response.model == "speaker-diarization-3.1-local"
    assert response.response_format == audio_pb2.RESPONSE_FORMAT_JSON
    assert response.document == ""


def test_labels_are_stable_across_calls_and_rttm_renders_the_turns(
    diarization_address, speech, reference
) -> None:
    response = call(
        diarization_address,
        audio=audio_pb2.Audio(content=speech),
        num_speakers=2,
        response_format=audio_pb2.RESPONSE_FORMAT_RTTM,
    )
    expected = reference(num_speakers=2)
    assert turns_of(response.segments) == expected
    assert response.segments[0].speaker == "SPEAKER_00"
    assert response.response_format == audio_pb2.RESPONSE_FORMAT_RTTM
    lines = response.document.splitlines()
    assert len(lines) == len(expected)
    start, end, speaker = expected[0]
    assert lines[0] == f"SPEAKER audio 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>"
    assert response.document.endswith("\n")


def test_exclusive_turns_match_pyannotes_exclusive_diarization(
    diarization_address, speech, reference
) -> None:
    response = call(
        diarization_address, audio=audio_pb2.Audio(content=speech), num_speakers=2, exclusive=True
    )
    expected = reference(exclusive=True, num_speakers=2)
    assert turns_of(response.segments) == expected
    assert expected != reference(num_speakers=2)
    assert response.num_speakers == 2
    for before, after in zip(response.segments, response.segments[1:], strict=False):
        assert before.end <= after.start


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (
            {"num_speakers": 0},
            "num_speakers must be at least 1 (got 0); leave it unset to let the model estimate",
        ),
        (
            {"min_speakers": -2},
            "min_speakers must be at least 1 (got -2); leave it unset to let the model estimate",
        ),
        ({"max_speakers": 101}, "max_speakers must be at most 100 (got 101)"),
        ({"num_speakers": 100000}, "num_speakers must be at most 100 (got 100000)"),
        (
            {"min_speakers": 3, "max_speakers": 2},
            "min_speakers (3) must not be greater than max_speakers (2)",
        ),
        (
            {"num_speakers": 5, "max_speakers": 3},
            "num_speakers (5) is above max_speakers (3); set one or the other",
        ),
        (
            {"num_speakers": 1, "min_speakers": 2},
            "num_speakers (1) is below min_speakers (2); set one or the other",
        ),
    ],
)
def test_impossible_speaker_counts_are_invalid_argument(diarization_address, speech, counts, message) -> None:
    error = refused(diarization_address, audio=audio_pb2.Audio(content=speech), **counts)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


_NOT_HERE = "(it renders a transcript: use the transcription or orchestrator service)"


@pytest.mark.parametrize(
    ("response_format", "message"),
    [
        (audio_pb2.RESPONSE_FORMAT_SRT, f"response_format srt {_NOT_HERE}"),
        (audio_pb2.RESPONSE_FORMAT_TEXT, f"response_format text {_NOT_HERE}"),
        (99, "response_format 99"),
    ],
)
def test_transcript_formats_are_invalid_argument(
    diarization_address, speech, response_format, message
) -> None:
    error = refused(
        diarization_address, audio=audio_pb2.Audio(content=speech), response_format=response_format
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        f"the diarization service has no {message}; use one of: json, verbose_json, rttm"
    )


def test_missing_or_undecodable_audio_is_invalid_argument(diarization_address) -> None:
    missing = refused(diarization_address, num_speakers=2)
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert missing.details().startswith("audio is required")
    garbage = refused(diarization_address, audio=audio_pb2.Audio(content=b"not audio at all"))
    assert garbage.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert garbage.details().startswith("could not decode the audio")


class GoesAway:
    """A call context whose caller leaves after `active_checks` checks (a cancel or a deadline)."""

    def __init__(self, active_checks: int) -> None:
        self.checks = 0
        self.active_checks = active_checks

    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        self.checks += 1
        return self.checks <= self.active_checks


def test_a_caller_that_goes_away_stops_the_pipeline_between_steps(engine, speech) -> None:
    servicer = DiarizationServicer(engine)
    request = diarization_pb2.DiarizeRequest(audio=audio_pb2.Audio(content=speech))
    with pytest.raises(DeadlineExceeded, match="before diarization started"):
        servicer.Diarize(request, GoesAway(active_checks=0))
    midway = GoesAway(active_checks=2)  # alive when the call starts and after the first batch
    with pytest.raises(DeadlineExceeded, match="during diarization"):
        servicer.Diarize(request, midway)
    assert midway.checks == 3


def test_turn_times_in_the_proto_and_its_json_are_whole_milliseconds(diarization_address, speech) -> None:
    response = call(diarization_address, audio=audio_pb2.Audio(content=speech), num_speakers=2)
    times = [time for turn in response.segments for time in (turn.start, turn.end)]
    assert len(times) >= 4
    assert all(round(time, 3) == time for time in times)
    rendered = json_format.MessageToDict(response)["segments"]
    assert [(turn["start"], turn["end"]) for turn in rendered] == [
        (t.start, t.end) for t in response.segments
    ]
    assert not re.search(r"\.\d{4,}", json.dumps(rendered))  # e.g. 2.8000000000000003
