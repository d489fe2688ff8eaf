"""The `parakeet` CLI as a user runs it (a subprocess): embedded, against gRPC servers, against the
RunPod worker's local test API; output compared with the orchestrator servicer's own answer."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
import srt

from parakeet.cli import Progress
from parakeet.runpod import response_to_json
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.orchestrator.server import SERVICE_NAME as ORCHESTRATOR
from tests.client.conftest import WAV, needs_server_auth
from tests.support.servers import (
    REPO_ROOT,
    VENV_BIN,
    Spawned,
    free_port,
    start_process,
    stop_process,
    wait_for_health,
    wait_for_http,
)

MODEL = "parakeet-tdt-tiny-v1.nemo"


def parakeet(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `.venv/bin/parakeet ARGS` (stderr is a pipe, so progress is in plain lines)."""
    return subprocess.run(
        [str(VENV_BIN / "parakeet"), *map(str, args)],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_progress(stderr: str, *steps: str) -> None:
    """stderr is exactly a start line and a done line per step, in order."""
    lines = stderr.splitlines()
    assert len(lines) == 2 * len(steps), stderr
    for index, step in enumerate(steps):
        assert lines[2 * index] == f"parakeet: {step}..."
        assert re.fullmatch(rf"parakeet: {re.escape(step)}: done in \d+\.\ds", lines[2 * index + 1]), lines


@pytest.fixture(scope="module", autouse=True)
def background(request, tdt_model_path, pyannote_pipeline, pyannote_hub, tmp_path_factory) -> Iterator[dict]:
    """Start `parakeet-server orchestrator --backend inprocess` and the RunPod worker's local test
    API at once, when a selected test needs them: their model loading overlaps the embedded tests
    instead of adding to the run."""
    wanted = {
        name
        for item in request.session.items
        for name in ("parakeet_server", "runpod_api")
        if name in item.fixturenames
    }
    logs = tmp_path_factory.mktemp("servers")
    started: dict[str, tuple[Spawned, str]] = {}
    if "parakeet_server" in wanted:
        port = free_port()
        command = [
            str(VENV_BIN / "parakeet-server"),
            "orchestrator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        command += [
            "--backend",
            "inprocess",
            "--model",
            str(tdt_model_path),
            "--pipeline",
            str(pyannote_pipeline),
        ]
        env = {"PARAKEET_FETCH_ALLOW": "127.0.0.1"}
        started["parakeet_server"] = (start_process(command, logs / "server.log", env), f"127.0.0.1:{port}")
    if "runpod_api" in wanted:
        port = free_port()
        command = [str(VENV_BIN / "python"), "-m", "parakeet_server.orchestrator.handler", "--rp_serve_api"]
        command += ["--rp_api_port", str(port), "--rp_api_host", "127.0.0.1"]
        env = {
            "ORCHESTRATOR_BACKEND": "inprocess",
            "TRANSCRIPTION_MODEL": str(tdt_model_path),
            "HF_HUB_CACHE": str(pyannote_hub),
            "HF_HUB_OFFLINE": "1",
        }
        started["runpod_api"] = (start_process(command, logs / "runpod.log", env), f"http://127.0.0.1:{port}")
    yield started
    for process, _address in started.values():
        stop_process(process, grace=15.0)


@pytest.fixture(scope="module")
def parakeet_server(background) -> str:
    """HOST:PORT of the parakeet-server process, once its OrchestratorService is SERVING."""
    server, address = background["parakeet_server"]
    wait_for_health(address, ORCHESTRATOR, process=server, timeout=180)
    return address


@pytest.fixture(scope="module")
def runpod_api(background) -> str:
    """Base URL of the RunPod worker's local test API (it listens once both models are warm)."""
    worker, url = background["runpod_api"]
    wait_for_http(f"{url}/docs", worker, timeout=180)
    return url


def without_model(document: dict) -> dict:
    return {key: value for key, value in document.items() if key != "model"}


def test_help_explains_the_modes_with_examples() -> None:
    result = parakeet("transcribe", "--help")
    assert result.returncode == 0
    for text in (
        "--runpod ENDPOINT_ID",
        "--server HOST:PORT",
        "embedded: loads the models into this process",
        "parakeet transcribe call.wav --diarize --format srt -o call.srt",
        "{json,verbose_json,text,srt,vtt,rttm}",
    ):
        assert text in result.stdout, text
    top = parakeet("--help")
    assert top.returncode == 0 and "transcribe" in top.stdout and "health" in top.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_says_when_a_step_failed() -> None:
    stream = _Terminal()
    with Progress(stream).step("loading the model"):
        time.sleep(0.35)
    text = stream.getvalue()
    frame = r"\r{} loading the model\.\.\. \d+\.\ds\x1b\[K"
    assert re.match(frame.format(r"\|") + frame.format("/"), text), text
    assert re.search(r"\rparakeet: loading the model: done in \d+\.\ds\x1b\[K\n$", text)
    assert text.count("\n") == 1

    plain = io.StringIO()
    with pytest.raises(RuntimeError), Progress(plain).step("transcribing"):
        raise RuntimeError("boom")
    assert re.fullmatch(
        r"parakeet: transcribing\.\.\.\nparakeet: transcribing: failed in 0\.0s\n", plain.getvalue()
    )

    quiet = _Terminal()
    with Progress(quiet, enabled=False).step("transcribing"):
        pass
    assert quiet.getvalue() == ""


def test_usage_errors_exit_2_with_the_reason(tmp_path, audio_files) -> None:
    wav = audio_files["wav"]
    cases = [
        (
            ["transcribe", tmp_path / "missing.wav"],
            f"parakeet: error: {tmp_path / 'missing.wav'}: no such file",
        ),
        (["transcribe", wav, "--format", "docx"], "invalid choice: 'docx'"),
        (
            ["transcribe", wav, "--format", "rttm"],
            "parakeet: error: --format: response_format rttm lists speaker turns: set diarize=true, or use one of: "
            "json, verbose_json, text, srt, vtt",
        ),
        (["transcribe", wav, "-o", tmp_path / "no" / "out.srt"], "the directory does not exist"),
        (["transcribe", wav, "--num-speakers", "0"], "must be at least 1, got 0"),
        (["transcribe", wav, "--server", "h:1", "--runpod", "x"], "not allowed with argument"),
        (["transcribe", wav, "--runpod", "x"], "--runpod needs the API key in the environment"),
        ([], "the following arguments are required: COMMAND"),
    ]
    for args, message in cases:
        result = parakeet(*args, env={"RUNPOD_API_KEY": "", "RUNPOD_ENDPOINT_URL": ""})
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stdout == "" and "Traceback" not in result.stderr


def test_embedded_srt_is_the_fixture_models_transcript(audio_files, tdt_model_path, expected) -> None:
    result = parakeet("transcribe", audio_files["wav"], "--format", "srt", "--model", tdt_model_path)
    assert result.returncode == 0, result.stderr
    want = expected(WAV, response_format="srt")
    assert result.stdout == want.document
    cues = list(srt.parse(result.stdout))
    assert " ".join(cue.content for cue in cues) == want.text != ""
    assert cues[0].start.total_seconds() == want.segments[0].start
    assert_progress(result.stderr, "loading the model", "transcribing")


def test_embedded_diarize_writes_the_json_mapping_to_a_file(
    audio_files, tdt_model_path, pyannote_pipeline, expected, tmp_path
) -> None:
    out = tmp_path / "out.json"
    result = parakeet(
        "transcribe",
        audio_files["wav"],
        "--diarize",
        "--max-speakers",
        "3",
        "--format",
        "verbose_json",
        "-o",
        out,
        "--quiet",
        "--model",
        tdt_model_path,
        "--pipeline",
        pyannote_pipeline,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    document = json.loads(out.read_text())
    assert document == response_to_json(
        expected(WAV, diarize=True, max_speakers=3, response_format="verbose_json")
    )
    assert document["response_format"] == "verbose_json" and document["num_speakers"] >= 1
    assert {word["speaker"] for word in document["words"]} <= {
        turn["speaker"] for turn in document["speaker_turns"]
    }


def test_server_mode_prints_the_document_and_maps_errors_to_exit_1(address, audio_files, expected) -> None:
    result = parakeet("transcribe", audio_files["wav"], "--server", address, "--format", "text")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected(WAV, response_format="text").document != ""
    assert_progress(result.stderr, f"transcribing on {address}")

    failed = parakeet("transcribe", audio_files["bad"], "--server", address, "-q")
    assert failed.returncode == 1 and failed.stdout == ""
    # The SDK's test API drops the job's output (and with it error_code) from a FAILED reply, so
    # the status code does not survive; the worker's message does.
    assert failed.stderr.startswith("parakeet: error: ")
    assert "could not decode the audio as 'wav'" in failed.stderr and len(failed.stderr.splitlines()) == 1
    assert len(failed.stderr.splitlines()) == 1

    health = parakeet("health", "--server", address)
    assert health.returncode == 0
    assert health.stdout.splitlines() == [
        "parakeet.v1.TranscriptionService: SERVING",
        "parakeet.v1.DiarizationService: SERVING",
        "parakeet.v1.OrchestratorService: SERVING",
    ]


@needs_server_auth
def test_the_token_comes_from_the_environment_or_a_file(
    start_host, orchestrator, audio_files, tmp_path
) -> None:
    host = start_host([orchestrator_server.hosted_service(orchestrator)], auth_token="s3cret")
    wait_for_health(host.address)
    args = ("transcribe", audio_files["wav"], "--server", host.address, "--format", "text", "-q")
    assert parakeet(*args, env={"PARAKEET_AUTH_TOKEN": "s3cret"}).returncode == 0
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    assert parakeet(*args, "--auth-token-file", token_file, env={"PARAKEET_AUTH_TOKEN": ""}).returncode == 0
    refused = parakeet(*args, env={"PARAKEET_AUTH_TOKEN": "wrong"})
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "parakeet: error: UNAUTHENTICATED: this server needs an 'authorization: Bearer <token>' header"
    )


def test_against_a_parakeet_server_process_with_url_audio(parakeet_server, http_audio, expected) -> None:
    result = parakeet(
        "transcribe", f"{http_audio}/sweep.wav", "--diarize", "--format", "vtt", "--server", parakeet_server
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected(WAV, diarize=True, response_format="vtt").document
    assert "<v SPEAKER_00>" in result.stdout


def test_runpod_mode_posts_the_job_json_to_the_local_test_api(runpod_api, audio_files, expected) -> None:
    result = parakeet(
        "transcribe", audio_files["wav"], "--diarize", "--format", "json", "--runpod-url", runpod_api
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    want = response_to_json(expected(WAV, diarize=True, response_format="json"))
    assert without_model(document) == without_model(want)
    assert document["model"] == f"{MODEL} + pyannote/speaker-diarization-3.1"
    assert_progress(result.stderr, f"transcribing on RunPod ({runpod_api})")

    failed = parakeet(
        "transcribe",
        audio_files["bad"],
        "--runpod",
        "endpoint-id",
        "-q",
        env={"RUNPOD_ENDPOINT_URL": runpod_api, "RUNPOD_API_KEY": "test-key"},
    )
    assert failed.returncode == 1 and failed.stdout == ""
    # The SDK's test API drops the job's output (and with it error_code) from a FAILED reply, so
    # the status code does not survive; the worker's message does.
    assert failed.stderr.startswith("parakeet: error: ")
    assert "could not decode the audio as 'wav'" in failed.stderr and len(failed.stderr.splitlines()) == 1
