"""The RunPod worker's job path in-process: JSON in, the servicer, JSON out (the HTTP path is in
test_processes.py)."""

from __future__ import annotations

import base64

import huggingface_hub.constants

from parakeet.v1 import diarization_pb2
from parakeet_server.core.runpod_shim import ready_or_refusing, run_job
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.diarization.handler import prepare
from parakeet_server.diarization.servicer import DiarizationServicer
from parakeet_server.diarization.wiring import engine_for
from tests.fixtures.pyannote_pipeline import SEGMENTATION_ID


def expected_output(turns: list[tuple[float, float, str]], num_speakers: int) -> dict[str, object]:
    return {
        "segments": [{"start": start, "end": end, "speaker": speaker} for start, end, speaker in turns],
        "num_speakers": num_speakers,
        "duration": 12.0,
        "model": "speaker-diarization-3.1-local",
        "response_format": "json",
        "document": "",
        "warnings": [],
        "speaker_identities": [],  # known speakers' matches: none asked for
        "overlap_segments": [],  # not exclusive: the segments themselves overlap where speech does
    }


def test_job_output_equals_a_direct_pipeline_call(engine, speech, reference) -> None:
    job = {
        "id": "job-1",
        "input": {"audio": base64.b64encode(speech).decode(), "audio_format": "wav", "num_speakers": 2},
    }
    output = run_job(job, diarization_pb2.DiarizeRequest, DiarizationServicer(engine).Diarize)
    assert output == expected_output(reference(num_speakers=2), 2)


def error_of(output: dict[str, object], code: str) -> object:
    """The error message of a failed job (the shim may add the gRPC code beside it)."""
    assert set(output) <= {"error", "error_code", "reason"}
    assert output.get("error_code", code) == code
    return output["error"]


def test_job_errors_come_back_as_the_grpc_message(engine, speech) -> None:
    diarize = DiarizationServicer(engine).Diarize
    audio = base64.b64encode(speech).decode()
    bounds = run_job(
        {"input": {"audio": audio, "min_speakers": 4, "max_speakers": 2}},
        diarization_pb2.DiarizeRequest,
        diarize,
    )
    assert (
        error_of(bounds, "INVALID_ARGUMENT") == "min_speakers (4) must not be greater than max_speakers (2)"
    )
    vtt = run_job(
        {"input": {"audio": audio, "response_format": "vtt"}}, diarization_pb2.DiarizeRequest, diarize
    )
    assert error_of(vtt, "INVALID_ARGUMENT") == (
        "the diarization service has no response_format vtt (it renders a transcript: use the "
        "transcription or orchestrator service); use one of: json, verbose_json, rttm"
    )


def test_the_worker_engine_comes_from_the_environment() -> None:
    engine = engine_for(
        DiarizationConfig.from_env(
            {
                "DIARIZATION_PIPELINE": "pyannote/speaker-diarization-community-1",
                "DIARIZATION_DEVICE": "cpu",
                "DIARIZATION_SEGMENTATION_BATCH_SIZE": "8",
                "DIARIZATION_EMBEDDING_BATCH_SIZE": "16",
            }
        )
    )
    assert (engine.pipeline, engine.device, engine.segmentation_batch_size, engine.embedding_batch_size) == (
        "pyannote/speaker-diarization-community-1",
        "cpu",
        8,
        16,
    )
    default = engine_for(DiarizationConfig.from_env({"DIARIZATION_PIPELINE": "", "DIARIZATION_DEVICE": ""}))
    assert (default.pipeline, default.device) == ("pyannote/speaker-diarization-3.1", "auto")


def test_a_worker_that_cannot_load_answers_each_job_with_what_to_fix(speech, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("RUNPOD_HF_CACHE", str(tmp_path / "no-store"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    diarize = ready_or_refusing(lambda: prepare(DiarizationConfig(device="cpu")))
    output = run_job(
        {"input": {"audio": base64.b64encode(speech).decode()}}, diarization_pb2.DiarizeRequest, diarize
    )
    message = error_of(output, "FAILED_PRECONDITION")
    assert isinstance(message, str)
    assert message.startswith(
        "pyannote/speaker-diarization-3.1, pyannote/segmentation-3.0, pyannote/wespeaker-voxceleb-resnet34-LM "
        "not found in the local Hugging Face caches"
    )
    assert f"https://hf.co/{SEGMENTATION_ID}" in message
