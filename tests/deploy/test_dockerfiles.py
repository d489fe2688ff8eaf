"""The four Dockerfiles: install exactly the pinned set of runtime code, run as non-root, start the right
thing, and claim no health check they cannot keep (hadolint runs in `make lint`)."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import tomllib

import pytest
import yaml

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
def test_every_pip_install_is_the_locked_project_with_its_extras(name: str) -> None:
    (install,) = image(name).pip_installs()
    assert install.startswith("pip install --constraint requirements.lock ./clients/python ")
    # The client distribution first: the server's pinned dependency on it resolves to this copy.
    target = install.removeprefix("pip install --constraint requirements.lock ./clients/python ")
    target = target.strip().strip('"')
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
    client = tomllib.loads((REPO_ROOT / "clients/python/pyproject.toml").read_text())["project"]
    requirements += client["dependencies"]
    for requirement in requirements:
        name, version = requirement.split("==")
        if name == client["name"]:  # the project's own distributions are not in the lock
            continue
        assert locked.get(normalise(re.sub(r"\[.*\]", "", name))) == version, (
            f"{requirement} is not what requirements.lock pins"
        )


def normalise(name: str) -> str:
    """PEP 503 project-name normalisation (pyannote.audio == pyannote-audio)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_as_a_numeric_non_root_user(name: str) -> None:
    users = [rest for keyword, rest in image(name).final_stage() if keyword == "USER"]
    assert users == ["10001"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_image_health_check_probes_a_port_its_start_command_never_opens(name: str) -> None:
    """The CMD is a RunPod handler: it opens no gRPC port (RunPod checks its workers itself), so a
    HEALTHCHECK running `parakeet health` against one would only ever report the image unhealthy."""
    assert image(name).command()[:2] == ["python", "-m"]
    assert image(name).command()[2].endswith(".handler")
    assert [rest for keyword, rest in image(name).instructions() if keyword == "HEALTHCHECK"] == []


def test_compose_health_checks_probe_the_port_each_service_command_opens() -> None:
    """Where the images run as gRPC or HTTP servers (compose.yaml), the health check lives beside the
    command that opens the port, and probes that port."""
    services = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())["services"]
    assert set(services) == {"transcription", "diarization", "orchestrator", "gateway"}
    for name, service in services.items():
        command = " ".join(service["command"])
        (port,) = re.findall(r"--port[ =](\d+)", command)
        probe = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}" in probe, (name, command, probe)
        assert service["ports"] == [f"{port}:{port}"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_copy_only_the_runtime_package_the_client_and_the_build_files(name: str) -> None:
    """eval/, tools/, bench/ and tests/ are for development only: never in an image."""
    sources = {
        source
        for keyword, rest in image(name).instructions()
        if keyword == "COPY" and not rest.startswith("--from")
        for source in shlex.split(rest)[:-1]
    }
    assert sources == {
        "pyproject.toml",
        "requirements.lock",
        "README.md",
        "clients/python",
        "parakeet_server",
    }


def test_the_runtime_package_imports_no_development_only_package() -> None:
    """The images hold parakeet_server without eval/, tools/, bench/ or tests/: importing one would fail."""
    dev_only = {"eval", "tools", "bench", "tests"}
    modules = sorted((REPO_ROOT / "parakeet_server").rglob("*.py"))
    assert len(modules) > 20  # the walk sees the package
    offenders = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            offenders += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names if n.split(".")[0] in dev_only]
    assert offenders == []


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
