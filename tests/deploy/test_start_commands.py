"""Each Dockerfile's start command, run outside Docker with the image's environment and the fixture
models, comes up and answers the existing job JSON (no Docker engine here, so no image is built)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import image
from tests.diarization.helpers import synthesize
from tests.support.servers import (
    VENV_BIN,
    Spawned,
    completed,
    free_port,
    post_json,
    start_process,
    stop_process,
    wait_for_worker,
)

AUDIO = base64.b64encode(synthesize()).decode()


def start(name: str, port: int, log: Path, extra_env: dict[str, str]) -> Spawned:
    """The image's CMD and ENV (PATH and the venv's python swapped for this checkout's), plus the
    runpod SDK's local test API flags."""
    command = image(name).command()
    assert command[0] == "python"
    env = {key: value for key, value in image(name).env().items() if key != "PATH"}
    rp_flags = ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    return start_process([str(VENV_BIN / "python"), *command[1:], *rp_flags], log, {**env, **extra_env})


@pytest.fixture(scope="module")
def workers(tdt_model_path: Path, pyannote_pipeline_path: Path, tmp_path_factory) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("start-commands")
    models = {
        "TRANSCRIPTION_MODEL": str(tdt_model_path),
        "DIARIZATION_PIPELINE": str(pyannote_pipeline_path),
        "DIARIZATION_DEVICE": "cpu",
    }
    ports = {name: free_port() for name in ("transcription", "diarization", "single", "orchestrator")}
    processes = {
        "transcription": start("Dockerfile.transcription", ports["transcription"], logs / "t.log", models),
        "diarization": start("Dockerfile.diarization", ports["diarization"], logs / "d.log", models),
        "single": start("Dockerfile", ports["single"], logs / "s.log", models),
        "orchestrator": start(
            "Dockerfile.orchestrator",
            ports["orchestrator"],
            logs / "o.log",
            {
                "TRANSCRIPTION_ENDPOINT_URL": f"http://127.0.0.1:{ports['transcription']}",
                "DIARIZATION_ENDPOINT_URL": f"http://127.0.0.1:{ports['diarization']}",
            },
        ),
    }
    try:
        yield {name: wait_for_worker(port, processes[name]) for name, port in ports.items()}
    finally:
        for process in processes.values():
            stop_process(process)


def test_transcription_image_answers_a_job(workers: dict[str, str]) -> None:
    output = completed(
        post_json(f"{workers['transcription']}/runsync", {"input": {"audio": AUDIO, "word_timestamps": True}})
    )
    assert output["words"] and output["duration"] == 12.0 and output["model"] == "parakeet-tdt-tiny-v1.nemo"


def test_diarization_image_answers_the_existing_shape(workers: dict[str, str]) -> None:
    output = completed(
        post_json(f"{workers['diarization']}/runsync", {"input": {"audio": AUDIO, "num_speakers": 2}})
    )
    assert output["num_speakers"] == 2 and output["duration"] == 12.0
    assert {turn["speaker"] for turn in output["segments"]} == {"SPEAKER_00", "SPEAKER_01"}


@pytest.mark.parametrize("name", ["single", "orchestrator"])
def test_single_and_orchestrator_images_answer_with_speakers(workers: dict[str, str], name: str) -> None:
    output = completed(post_json(f"{workers[name]}/runsync", {"input": {"audio": AUDIO, "diarize": True}}))
    assert output["segments"] and all(
        segment["speaker"].startswith("SPEAKER_") for segment in output["segments"]
    )
    assert output["num_speakers"] >= 1
