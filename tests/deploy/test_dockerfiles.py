"""The four Dockerfiles: lint clean, install exactly the pinned set, run as non-root, start the right thing."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest

from tests.deploy.dockerfiles import DOCKERFILES, image
from tests.support.servers import REPO_ROOT, VENV_BIN

EXTRAS = {
    "Dockerfile": "asr,diarization",
    "Dockerfile.transcription": "asr",
    "Dockerfile.diarization": "diarization",
    "Dockerfile.orchestrator": "",
}
COMMANDS = {
    "Dockerfile": ["python", "-m", "parakeet_server.orchestrator.handler"],
    "Dockerfile.transcription": ["python", "-m", "parakeet_server.transcription.handler"],
    "Dockerfile.diarization": ["python", "-m", "parakeet_server.diarization.handler"],
    "Dockerfile.orchestrator": ["python", "-m", "parakeet_server.orchestrator.handler"],
}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_is_clean(name: str) -> None:
    result = subprocess.run([str(VENV_BIN / "hadolint"), name], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_pip_install_is_the_locked_project_with_its_extras(name: str) -> None:
    (install,) = image(name).pip_installs()
    assert install.startswith("pip install --constraint requirements.lock ")
    target = install.removeprefix("pip install --constraint requirements.lock ").strip().strip('"')
    extras = EXTRAS[name]
    if extras:
        assert target in (f".[{extras}]", ".[${EXTRAS}]")
        assert f"ARG EXTRAS={extras}" in image(name).text
    else:
        assert target == "."
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert all(extra in declared for extra in filter(None, extras.split(",")))


def test_the_lock_pins_every_dependency_pyproject_declares() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    locked = {
        normalise(line.split("==")[0]): line.split("==")[1]
        for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    requirements = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    for requirement in requirements:
        name, version = requirement.split("==")
        assert locked.get(normalise(re.sub(r"\[.*\]", "", name))) == version, (
            f"{requirement} is not what requirements.lock pins"
        )


def normalise(name: str) -> str:
    """PEP 503 project-name normalisation (pyannote.audio == pyannote-audio)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_as_a_numeric_non_root_user_with_a_health_check(name: str) -> None:
    final = image(name).final_stage()
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users == ["10001"]
    assert any(
        keyword == "HEALTHCHECK" and "parakeet" in rest and "health" in rest for keyword, rest in final
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_start_command_is_the_architecture_handler(name: str) -> None:
    assert image(name).command() == COMMANDS[name]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.transcription", "Dockerfile.diarization"])
def test_gpu_images_read_models_from_the_runpod_cache_and_bake_only_on_request(name: str) -> None:
    env = image(name).env()
    assert env["RUNPOD_HF_CACHE"] == "/runpod-volume/huggingface-cache/hub"
    assert env["HF_HOME"] == "/runpod-volume/huggingface-cache"
    assert "ARG BAKE_MODELS=false" in image(name).text
    assert image(name).instructions()[0] == ("ARG", "CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04")


def test_the_single_endpoint_runs_both_engines_in_process_and_the_orchestrator_calls_runpod() -> None:
    assert image("Dockerfile").env()["ORCHESTRATOR_BACKEND"] == "inprocess"
    assert image("Dockerfile.orchestrator").env()["ORCHESTRATOR_BACKEND"] == "runpod"


def test_the_orchestrator_worker_starts_without_the_model_stack() -> None:
    """Dockerfile.orchestrator installs no torch, NeMo or pyannote, so its handler must not import them."""
    probe = (
        "import sys, parakeet_server.orchestrator.handler, parakeet_server.cli; "
        "print(sorted(m for m in ('torch', 'nemo', 'pyannote', 'torchaudio') if m in sys.modules))"
    )
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
