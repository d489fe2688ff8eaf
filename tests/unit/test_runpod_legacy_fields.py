"""Every RunPod endpoint accepts every field the original service's handlers read (issue #14).

The original split handlers read `audio, audio_format, num_speakers` (diarization) and `audio,
audio_format, language, response_format, timestamps, temperature, word_timestamps,
diarization_segments` (transcription), its single endpoint `diarize` too, and ignored anything
else. Here each of those fields is sent alone beside the audio to each endpoint, through
`run_job` over the real servicers and the fixture models: a field an endpoint has a use for
changes nothing but what it asks for; one it has no use for changes nothing at all and is named
in `warnings`. A field no client ever sent is still an INVALID_ARGUMENT naming it.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parakeet.runpod import RunPodEndpoint, response_from_json, response_to_json
from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, transcription_pb2
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.runpod_shim import LEGACY_FIELDS, run_job
from parakeet_server.diarization.pyannote_engine import PyannoteEngine
from parakeet_server.diarization.servicer import DiarizationServicer
from parakeet_server.orchestrator.backends import InProcessBackends, RunPodBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.diarization.helpers import synthesize
from tests.support.runsync_stub import runsync_stub

AUDIO = base64.b64encode(synthesize()).decode()
TURNS = [
    {"start": 0.0, "end": 6.0, "speaker": "SPEAKER_00"},
    {"start": 6.0, "end": 12.0, "speaker": "SPEAKER_01"},
]
# A value of each legacy field, as existing clients send it.
LEGACY_VALUES: dict[str, Any] = {
    "audio_format": "wav",
    "diarization_segments": TURNS,
    "diarize": True,
    "language": "en",
    "num_speakers": 3,
    "response_format": "json",
    "temperature": 0.0,
    "timestamps": True,
    "word_timestamps": True,
}
NO_TRANSCRIPT = "the diarization endpoint returns speaker turns, not a transcript"
NO_TEMPERATURE = "'temperature' is ignored: parakeet decodes greedily and has no sampling temperature"
IGNORED = {
    "transcription": {
        "diarize": (
            "'diarize' is ignored: the transcription endpoint takes speakers only from "
            "diarization_segments (the diarization endpoint's segments); the orchestrator endpoint "
            "finds them itself"
        ),
        "num_speakers": (
            "'num_speakers' is ignored: the transcription endpoint does not find speakers; "
            "send num_speakers to the diarization endpoint"
        ),
        "temperature": NO_TEMPERATURE,
    },
    "diarization": {
        "diarize": "'diarize' is ignored: the diarization endpoint always finds speakers",
        "language": f"'language' is ignored: {NO_TRANSCRIPT}",
        "timestamps": f"'timestamps' is ignored: {NO_TRANSCRIPT}",
        "word_timestamps": f"'word_timestamps' is ignored: {NO_TRANSCRIPT}",
        "diarization_segments": (
            "'diarization_segments' is ignored: the diarization endpoint finds the speaker turns itself"
        ),
        "temperature": NO_TEMPERATURE,
    },
    "orchestrator": {
        "diarization_segments": (
            "'diarization_segments' is ignored: the orchestrator endpoint finds the speaker turns "
            "itself (with diarize: true)"
        ),
        "temperature": NO_TEMPERATURE,
    },
}
REQUEST_TYPES = {
    "transcription": transcription_pb2.TranscribeRequest,
    "diarization": diarization_pb2.DiarizeRequest,
    "orchestrator": orchestrator_pb2.OrchestrateRequest,
}


def with_speakers(output: dict[str, Any]) -> bool:
    """Every segment (and word, when words were asked for) names its speaker."""
    parts = [*output["segments"], *output["words"]]
    return bool(output["segments"]) and all(part["speaker"] for part in parts)


# What a field an endpoint uses does to the output, beyond the baseline (None: nothing visible,
# the value sent is the default or what the service would detect anyway).
EFFECTS: dict[tuple[str, str], Callable[[dict[str, Any]], bool]] = {
    ("transcription", "diarization_segments"): with_speakers,
    ("transcription", "word_timestamps"): lambda output: bool(output["words"]),
    ("diarization", "num_speakers"): lambda output: output["num_speakers"] == 3,
    ("orchestrator", "diarize"): with_speakers,
    ("orchestrator", "word_timestamps"): lambda output: bool(output["words"]),
}


class Once:
    """A servicer that runs the model once per distinct request and records what it was asked.

    A field an endpoint ignores must reach the servicer as the very request the audio alone
    makes, so those cases cost no model run; every distinct request still runs for real."""

    def __init__(self, method: Callable[[Any, Any], Any]) -> None:
        self.method = method
        self.answers: dict[bytes, Any] = {}
        self.requests: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, request: Any, context: Any) -> Any:
        key = request.SerializeToString(deterministic=True)
        with self.lock:
            self.requests.append(request)
            known = self.answers.get(key)
        if known is None:
            known = self.method(request, context)
            with self.lock:
                self.answers[key] = known
        answer = type(known)()
        answer.CopyFrom(known)  # run_job adds warnings to what it gets
        return answer


@pytest.fixture(scope="module")
def servicers(tdt_model_path: Path, pyannote_pipeline_path: Path) -> Iterator[dict[str, Once]]:
    """The three endpoints' servicers, as the handlers build them (the single endpoint in process)."""
    diarization_engine = PyannoteEngine(str(pyannote_pipeline_path), device="cpu")
    diarization_engine.load()
    transcription_engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(tdt_model_path)))
    transcription_engine.load()
    runner = TranscriptionRunner(transcription_engine, BatchPolicy(max_batch_size=8, max_wait_ms=5.0))
    transcribe = Once(TranscriptionServicer(runner).Transcribe)
    diarize = Once(DiarizationServicer(diarization_engine).Diarize)
    yield {
        "transcription": transcribe,
        "diarization": diarize,
        "orchestrator": Once(
            OrchestratorServicer(InProcessBackends(transcribe, diarize, lambda: None)).Orchestrate
        ),
    }
    runner.close()


Outputs = Callable[[str, dict[str, Any]], tuple[dict[str, Any], Any]]


@pytest.fixture(scope="module")
def outputs(servicers: dict[str, Once]) -> Outputs:
    """run_job on an endpoint: its output, and the request the servicer got (None: not reached)."""

    def output(endpoint: str, job_input: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        servicer = servicers[endpoint]
        asked = len(servicer.requests)
        result = run_job({"id": "legacy", "input": job_input}, REQUEST_TYPES[endpoint], servicer)
        return result, (servicer.requests[-1] if len(servicer.requests) > asked else None)

    return output


def test_the_table_covers_every_legacy_field() -> None:
    assert set(LEGACY_VALUES) | {"audio"} == LEGACY_FIELDS


@pytest.mark.parametrize("name", sorted(LEGACY_VALUES))
@pytest.mark.parametrize("endpoint", ["transcription", "diarization", "orchestrator"])
def test_each_legacy_field_is_accepted_on_each_endpoint(endpoint: str, name: str, outputs: Outputs) -> None:
    baseline, plain = outputs(endpoint, {"audio": AUDIO})
    assert "error" not in baseline and baseline["warnings"] == []
    output, request = outputs(endpoint, {"audio": AUDIO, name: LEGACY_VALUES[name]})
    assert "error" not in output, output
    warning = IGNORED[endpoint].get(name)
    if warning is not None:  # ignored: named, and nothing else differs
        assert output["warnings"] == [warning]
        assert request == plain
        assert {**output, "warnings": []} == baseline
        return
    assert output["warnings"] == []
    effect = EFFECTS.get((endpoint, name))
    if effect is None:
        assert output == baseline
    else:
        assert effect(output) and not effect(baseline)


@pytest.mark.parametrize("endpoint", ["transcription", "diarization", "orchestrator"])
def test_the_seed_clients_input_works_on_every_endpoint(endpoint: str, outputs: Outputs) -> None:
    seed = {"audio": AUDIO, "diarize": True, "response_format": "json"}
    output, _request = outputs(endpoint, seed)
    assert "error" not in output, output
    assert output["warnings"] == ([IGNORED[endpoint]["diarize"]] if endpoint != "orchestrator" else [])
    assert output["response_format"] == "json"
    assert output["duration"] == 12.0


def test_the_readme_split_example(outputs: Outputs) -> None:
    """README "RunPod: three architectures": the seed input to the diarization endpoint, then the
    same input plus its segments to the transcription endpoint: every segment gets a speaker."""
    job = {"audio": AUDIO, "diarize": True, "response_format": "json"}
    turns, _request = outputs("diarization", job)
    assert turns["warnings"] == ["'diarize' is ignored: the diarization endpoint always finds speakers"]
    assert turns["segments"] and turns["num_speakers"] >= 1
    transcript, _request = outputs("transcription", {**job, "diarization_segments": turns["segments"]})
    assert "error" not in transcript, transcript
    assert transcript["warnings"] == [IGNORED["transcription"]["diarize"]]
    assert with_speakers(transcript)
    assert {segment["speaker"] for segment in transcript["segments"]} <= {
        turn["speaker"] for turn in turns["segments"]
    }


@pytest.mark.parametrize(
    ("endpoint", "accepted"),
    [
        (
            "transcription",
            "audio, audio_format, diarization_segments, diarize, hotwords, language, multichannel, "
            "num_speakers, response_format, temperature, timestamps, word_timestamps",
        ),
        (
            "diarization",
            "audio, audio_format, diarization_segments, diarize, exclusive, known_speakers, language, "
            "max_speakers, min_speakers, num_speakers, response_format, speaker_match_threshold, temperature, "
            "timestamps, word_timestamps",
        ),
        (
            "orchestrator",
            "audio, audio_format, diarization_segments, diarize, hotwords, known_speakers, language, "
            "max_speakers, min_speakers, multichannel, num_speakers, response_format, speaker_match_threshold, "
            "speakers_optional, temperature, timestamps, word_timestamps",
        ),
    ],
)
def test_a_field_no_client_ever_sent_is_an_error_listing_the_accepted_ones(
    endpoint: str, accepted: str, outputs
) -> None:
    error = f'invalid job input: the {endpoint} endpoint has no field named "colour"; it accepts: {accepted}'
    assert outputs(endpoint, {"audio": AUDIO, "colour": "blue"}) == (
        {"error": error, "error_code": "INVALID_ARGUMENT", "reason": "UNKNOWN_FIELD"},
        None,
    )


@pytest.mark.parametrize(
    ("endpoint", "field", "value", "error"),
    [
        (
            "diarization",
            "diarize",
            "yes",
            "invalid job input: Failed to parse diarize field: Expected true or false without quotes "
            "at DiarizeRequest.diarize.",
        ),
        (
            "transcription",
            "num_speakers",
            "two",
            "invalid job input: Failed to parse num_speakers field: invalid literal for int() "
            "with base 10: 'two'.",
        ),
        ("orchestrator", "temperature", "hot", "'temperature' must be a number (it is ignored), not 'hot'"),
    ],
)
def test_an_ignored_field_of_the_wrong_type_is_still_named(
    endpoint: str, field: str, value: object, error: str, outputs
) -> None:
    assert outputs(endpoint, {"audio": AUDIO, field: value}) == (
        {"error": error, "error_code": "INVALID_ARGUMENT", "reason": "INVALID_FIELD"},
        None,
    )


def test_a_null_legacy_field_is_no_warning(outputs: Outputs) -> None:
    output = outputs("diarization", {"audio": AUDIO, "temperature": None, "language": None})
    assert output == outputs("diarization", {"audio": AUDIO})
    assert output[0]["warnings"] == []


def test_the_orchestrators_runpod_backend_round_trips_through_the_new_workers(
    servicers: dict[str, Once],
) -> None:
    """The orchestrator worker calls the split endpoints with request_to_json and reads their
    output with response_from_json; the split workers now print `warnings`, which it reads typed."""

    stub = {name: (REQUEST_TYPES[name], servicers[name]) for name in ("transcription", "diarization")}
    with runsync_stub(stub) as runsync:
        backends = RunPodBackends(
            RunPodEndpoint("t", f"{runsync.base}/transcription"),
            RunPodEndpoint("d", f"{runsync.base}/diarization"),
            api_key="k",
        )
        over_runpod = OrchestratorServicer(backends).Orchestrate
        job = {
            "id": "o",
            "input": {"audio": AUDIO, "diarize": True, "word_timestamps": True, "temperature": 0.0},
        }
        output = run_job(job, orchestrator_pb2.OrchestrateRequest, over_runpod)
        in_process = run_job(job, orchestrator_pb2.OrchestrateRequest, servicers["orchestrator"])
    jobs = runsync.jobs
    assert sorted(endpoint for endpoint, *_ in jobs) == ["diarization", "transcription"]
    for _endpoint, sent, answered in jobs:
        assert "temperature" not in sent and "error" not in answered
        assert answered["warnings"] == []  # what the orchestrator sends is all meaningful there
    assert output["warnings"] == [NO_TEMPERATURE]
    assert output == in_process


def test_warnings_survive_response_from_json() -> None:
    response = diarization_pb2.DiarizeResponse(
        num_speakers=1, response_format=audio_pb2.RESPONSE_FORMAT_RTTM, warnings=["'diarize' is ignored: x"]
    )
    assert response_from_json(response_to_json(response), diarization_pb2.DiarizeResponse) == response
    transcript = transcription_pb2.TranscribeResponse(
        text="hi", response_format=audio_pb2.RESPONSE_FORMAT_SRT, warnings=["a", "b"]
    )
    assert response_to_json(transcript)["warnings"] == ["a", "b"]
    assert (
        response_from_json(response_to_json(transcript), transcription_pb2.TranscribeResponse) == transcript
    )


def test_warnings_go_ahead_of_the_servicers_own_and_survive_a_response_without_the_field() -> None:
    def orchestrate(request: Any, context: Any) -> orchestrator_pb2.OrchestrateResponse:
        return orchestrator_pb2.OrchestrateResponse(warnings=["speakers are missing: ..."])

    job = {"input": {"audio": "https://example.com/a.wav", "temperature": 0.7}}
    output = run_job(job, orchestrator_pb2.OrchestrateRequest, orchestrate)
    assert output["warnings"] == [NO_TEMPERATURE, "speakers are missing: ..."]

    def untyped(request: Any, context: Any) -> audio_pb2.SpeakerTurn:
        return audio_pb2.SpeakerTurn(speaker="SPEAKER_00")

    output = run_job(job, orchestrator_pb2.OrchestrateRequest, untyped)
    assert output == {"start": 0.0, "end": 0.0, "speaker": "SPEAKER_00", "warnings": [NO_TEMPERATURE]}
