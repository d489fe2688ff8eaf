"""The client distribution alone (`make client-check`): installed from clients/python into a fresh
venv with the lock as constraints, it has grpcio and protobuf and nothing of the server stack
(torch, NeMo, pyannote, FastAPI, runpod, PyAV), and its API, its CLI and its RunPod job client
work against servers of the full install (a gRPC server hosting all three services, and a
/runsync stand-in over the orchestrator servicer). Needs pip to reach the package index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from parakeet import transcribe_request
from parakeet.runpod import response_to_json
from parakeet.v1 import orchestrator_pb2
from parakeet_server.core.context import JobContext
from tests.client.conftest import WAV
from tests.support.runsync_stub import runsync_stub
from tests.support.servers import REPO_ROOT

SCRIPT = Path(__file__).with_name("standalone_client.py")
# Everything the client may pull in: itself, gRPC, protobuf, and what they depend on.
CLIENT_DISTRIBUTIONS = {
    "parakeet-client",
    "grpcio",
    "grpcio-health-checking",
    "grpcio-status",
    "googleapis-common-protos",
    "protobuf",
    "typing-extensions",  # grpcio's dependency
    "tqdm",  # parakeet batch's progress bar
    "pip",
    "setuptools",
}


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away venv with only `pip install ./clients/python` (not editable: the wheel's
    contents are what is tested, stubs and py.typed included); its bin directory."""
    root = tmp_path_factory.mktemp("client-only")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = shutil.copytree(
        REPO_ROOT / "clients" / "python",
        root / "source",
        ignore=shutil.ignore_patterns("build", "*.egg-info"),
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--constraint",
            str(REPO_ROOT / "requirements.lock"),
            str(source),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv / "bin"


def run(bin_dir: Path, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command of the client venv, from a directory outside the repository (so nothing of the
    checkout is importable) and with none of this venv's paths in the environment."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / str(args[0])), *map(str, args[1:])],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_client_installs_without_the_server_stack(client_venv: Path, tmp_path: Path) -> None:
    result = run(client_venv, "python", SCRIPT, "imports", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["modules"] == dict.fromkeys(found["modules"], False), found["modules"]
    assert set(found["distributions"]) <= CLIENT_DISTRIBUTIONS, found["distributions"]
    assert "site-packages" in found["client"] and str(REPO_ROOT) not in found["client"]
    stubs = {path.name for path in (REPO_ROOT / "clients/python/parakeet/v1").glob("*.pyi")}
    assert set(found["typed"]) == {"py.typed"} | stubs and len(stubs) == 5


def test_the_api_works_against_a_server_of_the_full_install(
    client_venv: Path,
    address: str,
    audio_files: dict[str, Path],
    expected: Callable[..., orchestrator_pb2.OrchestrateResponse],
    transcription_servicer,
    tmp_path: Path,
) -> None:
    result = run(client_venv, "python", SCRIPT, "call", address, audio_files["wav"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    want = expected(WAV, diarize=True, speakers_optional=True, word_timestamps=True)
    assert answers["diarized"] == response_to_json(want) and want.words
    untimed = transcription_servicer.Transcribe(
        transcribe_request(WAV, timestamps=False, response_format="text"), JobContext()
    )
    assert answers["untimed"] == response_to_json(untimed) and untimed.document
    assert answers["refused"] == {
        "type": "InvalidArgument",
        "reason": "AUDIO_UNDECODABLE",
        "retryable": False,
    }
    assert answers["health"] == "SERVING"


def test_the_cli_works_against_a_server_and_runpod_and_says_what_embedded_mode_needs(
    client_venv: Path,
    address: str,
    orchestrator,
    audio_files: dict[str, Path],
    expected: Callable[..., orchestrator_pb2.OrchestrateResponse],
    tmp_path: Path,
) -> None:
    wav = audio_files["wav"]
    served = run(
        client_venv, "parakeet", "transcribe", wav, "--server", address, "--format", "srt", "-q", cwd=tmp_path
    )
    assert (served.returncode, served.stderr) == (0, "")
    assert served.stdout == expected(WAV, response_format="srt").document != ""

    with runsync_stub({"": (orchestrator_pb2.OrchestrateRequest, orchestrator.Orchestrate)}) as runsync:
        job = run(
            client_venv, "parakeet", "transcribe", wav, "--runpod-url", runsync.base, "-q", cwd=tmp_path
        )
    assert (job.returncode, job.stderr) == (0, "")
    assert json.loads(job.stdout) == response_to_json(expected(WAV))
    assert runsync.jobs[0][1]["audio_format"] == "wav"

    embedded = run(client_venv, "parakeet", "transcribe", wav, cwd=tmp_path)
    assert (embedded.returncode, embedded.stdout) == (2, "")
    assert embedded.stderr.strip().endswith(
        "the embedded mode (the models in this process) is not installed: "
        "pip install 'parakeet-grpc[asr,diarization]', or use --server HOST:PORT or --runpod ENDPOINT_ID"
    )
