"""The three RunPod architectures and the gRPC stack, run locally as real processes over the fixture
models, answering the existing JSON input with the same speaker-attributed transcript.

- single endpoint: the orchestrator handler with both engines in process;
- split: a diarization worker and a transcription worker, the client passing the turns on;
- orchestrator: the CPU orchestrator handler calling the two split workers over HTTP;
- gRPC: `parakeet-server all` (orchestrator -> gRPC diarization + transcription servers).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from parakeet.runpod import response_to_json
from parakeet.v1 import audio_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from parakeet_server.core.merge import with_overlap
from tests.diarization.helpers import synthesize
from tests.support.servers import (
    VENV_BIN,
    Spawned,
    completed,
    free_port,
    post_json,
    start_process,
    stop_process,
    wait_for_health,
    wait_for_worker,
)

PYTHON = str(VENV_BIN / "python")
AUDIO = synthesize()
JOB = {
    "audio": base64.b64encode(AUDIO).decode(),
    "diarize": True,
    "response_format": "json",
    "word_timestamps": True,
}


def worker(module: str, port: int, log: Path, env: dict[str, str]) -> Spawned:
    command = [
        PYTHON,
        "-m",
        module,
        "--rp_serve_api",
        "--rp_api_host",
        "127.0.0.1",
        "--rp_api_port",
        str(port),
    ]
    return start_process(command, log, env)


@pytest.fixture(scope="module")
def stack(tdt_model_path: Path, pyannote_pipeline_path: Path, tmp_path_factory) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("architectures")
    models = {
        "TRANSCRIPTION_MODEL": str(tdt_model_path),
        "DIARIZATION_PIPELINE": str(pyannote_pipeline_path),
        "DIARIZATION_DEVICE": "cpu",
        "TRANSCRIPTION_DEVICE": "cpu",
    }
    ports = {name: free_port() for name in ("transcription", "diarization", "orchestrator", "single")}
    grpc_ports = {name: free_port() for name in ("transcription", "diarization", "orchestrator")}
    processes = {
        "transcription": worker(
            "parakeet_server.transcription.handler", ports["transcription"], logs / "t.log", models
        ),
        "diarization": worker(
            "parakeet_server.diarization.handler", ports["diarization"], logs / "d.log", models
        ),
        "single": worker(
            "parakeet_server.orchestrator.handler",
            ports["single"],
            logs / "s.log",
            {**models, "ORCHESTRATOR_BACKEND": "inprocess"},
        ),
        "orchestrator": worker(
            "parakeet_server.orchestrator.handler",
            ports["orchestrator"],
            logs / "o.log",
            {
                "ORCHESTRATOR_BACKEND": "runpod",
                "TRANSCRIPTION_ENDPOINT_URL": f"http://127.0.0.1:{ports['transcription']}",
                "DIARIZATION_ENDPOINT_URL": f"http://127.0.0.1:{ports['diarization']}",
            },
        ),
        "grpc": start_process(
            [
                str(VENV_BIN / "parakeet-server"),
                "all",
                "--host",
                "127.0.0.1",
                *(arg for name, port in grpc_ports.items() for arg in (f"--{name}-port", str(port))),
            ],
            logs / "g.log",
            models,
        ),
    }
    try:
        urls = {name: wait_for_worker(port, processes[name]) for name, port in ports.items()}
        for name, service in (
            ("transcription", "parakeet.v1.TranscriptionService"),
            ("diarization", "parakeet.v1.DiarizationService"),
            ("orchestrator", "parakeet.v1.OrchestratorService"),
        ):
            wait_for_health(f"127.0.0.1:{grpc_ports[name]}", service, timeout=180, process=processes["grpc"])
        urls["grpc"] = f"127.0.0.1:{grpc_ports['orchestrator']}"
        yield urls
    finally:
        for process in processes.values():
            stop_process(process)


def speaker_words(output: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    return [(w["word"], w["start"], w["end"], w["speaker"]) for w in output["words"]]


def test_all_architectures_return_the_same_speaker_attributed_transcript(stack: dict[str, str]) -> None:
    single = completed(post_json(f"{stack['single']}/runsync", {"input": JOB}))
    orchestrated = completed(post_json(f"{stack['orchestrator']}/runsync", {"input": JOB}))

    # Split: the client calls diarization, then hands its turns to transcription.
    turns = completed(
        post_json(f"{stack['diarization']}/runsync", {"input": {"audio": JOB["audio"], "exclusive": True}})
    )
    split = completed(
        post_json(
            f"{stack['transcription']}/runsync",
            {
                "input": {
                    "audio": JOB["audio"],
                    "word_timestamps": True,
                    "diarization_segments": turns["segments"],
                }
            },
        )
    )

    with grpc.insecure_channel(stack["grpc"]) as channel:
        response = orchestrator_pb2_grpc.OrchestratorServiceStub(channel).Orchestrate(
            orchestrator_pb2.OrchestrateRequest(
                audio=audio_pb2.Audio(content=AUDIO), diarize=True, word_timestamps=True
            ),
            timeout=120,
        )
    over_grpc = response_to_json(response)

    reference = speaker_words(single)
    assert len(reference) > 5
    assert {speaker for *_, speaker in reference} <= {"SPEAKER_00", "SPEAKER_01", "SPEAKER_02", "SPEAKER_03"}
    assert all(speaker for *_, speaker in reference)
    assert speaker_words(orchestrated) == reference
    assert speaker_words(split) == reference
    assert speaker_words(over_grpc) == reference
    assert single["text"] == orchestrated["text"] == split["text"] == over_grpc["text"]
    # The exclusive turns attribute the words; the answers' turns add the overlapped speech.
    assert single["speaker_turns"] == orchestrated["speaker_turns"] == over_grpc["speaker_turns"]
    both = [
        audio_pb2.SpeakerTurn(**turn)
        for key in ("segments", "overlap_segments")
        for turn in turns.get(key, [])
    ]
    layered = with_overlap(both[: len(turns["segments"])], both[len(turns["segments"]) :])
    assert [(t["start"], t["end"], t["speaker"]) for t in single["speaker_turns"]] == [
        (t.start, t.end, t.speaker) for t in layered
    ]
    assert single["num_speakers"] == orchestrated["num_speakers"] == turns["num_speakers"] >= 1
    assert [u["speaker"] for u in single["utterances"]] == [u["speaker"] for u in orchestrated["utterances"]]


def test_orchestrator_worker_reports_a_bad_input_from_its_backend(stack: dict[str, str]) -> None:
    reply = post_json(
        f"{stack['orchestrator']}/runsync", {"input": {"audio": base64.b64encode(b"not audio" * 40).decode()}}
    )
    assert reply["status"] == "FAILED"
    assert "could not decode the audio" in reply["error"]


def test_existing_minimal_input_works_on_the_single_endpoint(stack: dict[str, str]) -> None:
    output = completed(
        post_json(f"{stack['single']}/runsync", {"input": {"audio": JOB["audio"], "diarize": True}})
    )
    assert output["words"] == []  # word_timestamps not asked for
    assert output["segments"] and all(segment["speaker"] for segment in output["segments"])
    assert output["duration"] == 12.0


def test_grpc_stack_answers_a_call_without_a_deadline(stack: dict[str, str]) -> None:
    """grpc reports "no deadline" as ~2**63 ns remaining; forwarding that as a timeout once failed
    every call at once with DEADLINE_EXCEEDED."""
    with grpc.insecure_channel(stack["grpc"]) as channel:
        response = orchestrator_pb2_grpc.OrchestratorServiceStub(channel).Orchestrate(
            orchestrator_pb2.OrchestrateRequest(audio=audio_pb2.Audio(content=AUDIO), diarize=True)
        )
    assert response.num_speakers >= 1 and response.duration == 12.0
