"""The services' configs from the environment: one rule for every variable (empty means unset, a
bad value is an error naming it), the same limits for every service, and the RunPod workers'
configs built without the gRPC server modules."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import wave

import pytest

from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, transcription_pb2
from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.context import JobContext
from parakeet_server.core.errors import LimitExceeded, PreconditionFailed
from parakeet_server.core.settings import ConfigError, Env, worker_config
from parakeet_server.diarization import wiring as diarization_wiring
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.config import OrchestratorConfig
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.orchestrator.wiring import build_backends
from parakeet_server.transcription.config import TranscriptionConfig
from parakeet_server.transcription.engine import TranscriptionEngineConfig
from tests.support.servers import REPO_ROOT

LIMIT_MESSAGE = "audio is longer than the limit of 1 s"


def silent_wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * int(16000 * seconds))
    return buffer.getvalue()


# --- one rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable",
    [
        "TRANSCRIPTION_MODEL",
        "TRANSCRIPTION_DEVICE",
        "TRANSCRIPTION_PRECISION",
        "TRANSCRIPTION_MAX_BATCH_SIZE",  # int("") used to crash the server at start-up
        "TRANSCRIPTION_MAX_BATCH_WAIT_MS",
        "TRANSCRIPTION_WINDOW_S",
        "TRANSCRIPTION_WINDOW_OVERLAP_S",
        "TRANSCRIPTION_WINDOW_BATCH_SIZE",
        "MAX_AUDIO_SECONDS",
    ],
)
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_transcription_variable_means_its_default(variable: str, empty: str) -> None:
    assert TranscriptionConfig.from_env({variable: empty}) == TranscriptionConfig()


@pytest.mark.parametrize(
    "variable",
    [
        "DIARIZATION_PIPELINE",
        "DIARIZATION_DEVICE",
        "DIARIZATION_SEGMENTATION_BATCH_SIZE",
        "DIARIZATION_EMBEDDING_BATCH_SIZE",
        "DIARIZATION_FALLBACK",
        "MAX_AUDIO_SECONDS",
    ],
)
def test_an_empty_diarization_variable_means_its_default(variable: str) -> None:
    assert DiarizationConfig.from_env({variable: ""}) == DiarizationConfig()


def test_the_defaults_are_the_documented_ones() -> None:
    assert TranscriptionConfig.from_env({}) == TranscriptionConfig(
        engine=TranscriptionEngineConfig(
            model="nvidia/parakeet-tdt-0.6b-v2", device="auto", precision="auto", window_s=120.0,
            window_overlap_s=16.0, window_batch_size=None,
        ),
        batch=BatchPolicy(max_batch_size=16, max_wait_ms=5.0),
        limits=AudioLimits(max_duration_s=4 * 3600.0),
    )  # fmt: skip
    assert DiarizationConfig.from_env({}) == DiarizationConfig(
        pipeline="pyannote/speaker-diarization-3.1", device="auto", segmentation_batch_size=32,
        embedding_batch_size=32, fallback="none", limits=AudioLimits(max_duration_s=4 * 3600.0),
    )  # fmt: skip
    orchestrator = OrchestratorConfig.from_env({})
    assert (orchestrator.backend, orchestrator.transcription_address, orchestrator.diarization_address) == (
        "grpc",
        "127.0.0.1:50051",
        "127.0.0.1:50052",
    )
    assert OrchestratorConfig.from_env({}, backend="runpod").backend == "runpod"
    assert OrchestratorConfig.from_env({"ORCHESTRATOR_BACKEND": ""}, backend="runpod").backend == "runpod"


def test_every_variable_is_read() -> None:
    environ = {
        "TRANSCRIPTION_MODEL": "/models/tdt.nemo",
        "TRANSCRIPTION_DEVICE": "cuda:1",
        "TRANSCRIPTION_PRECISION": "fp16",
        "TRANSCRIPTION_MAX_BATCH_SIZE": "4",
        "TRANSCRIPTION_MAX_BATCH_WAIT_MS": "2.5",
        "TRANSCRIPTION_WINDOW_S": "60",
        "TRANSCRIPTION_WINDOW_OVERLAP_S": "8",
        "TRANSCRIPTION_WINDOW_BATCH_SIZE": "2",
        "DIARIZATION_PIPELINE": "offline",
        "DIARIZATION_DEVICE": "cpu",
        "DIARIZATION_SEGMENTATION_BATCH_SIZE": "8",
        "DIARIZATION_EMBEDDING_BATCH_SIZE": "16",
        "DIARIZATION_FALLBACK": "offline",
        "MAX_AUDIO_SECONDS": "90",
        "ORCHESTRATOR_BACKEND": "runpod",
        "TRANSCRIPTION_ENDPOINT_ID": "t-id",
        "DIARIZATION_ENDPOINT_ID": "d-id",
        "RUNPOD_API_KEY": "key",
        "PARAKEET_BACKEND_TLS_SERVER_NAME": "speech.internal",
    }
    limits = AudioLimits(max_duration_s=90.0)
    transcription = TranscriptionConfig(
        engine=TranscriptionEngineConfig(
            model="/models/tdt.nemo", device="cuda:1", precision="fp16", window_s=60.0, window_overlap_s=8.0,
            window_batch_size=2,
        ),
        batch=BatchPolicy(max_batch_size=4, max_wait_ms=2.5),
        limits=limits,
    )  # fmt: skip
    diarization = DiarizationConfig(
        pipeline="offline", device="cpu", segmentation_batch_size=8, embedding_batch_size=16, fallback="offline",
        limits=limits,
    )  # fmt: skip
    assert TranscriptionConfig.from_env(environ) == transcription
    assert DiarizationConfig.from_env(environ) == diarization
    orchestrator = OrchestratorConfig.from_env(environ)
    assert orchestrator == OrchestratorConfig(
        backend="runpod",
        transcription_endpoint_id="t-id",
        diarization_endpoint_id="d-id",
        runpod_api_key="key",
        backend_tls_server_name="speech.internal",
        transcription=transcription,
        diarization=diarization,
    )
    assert "key" not in repr(orchestrator).replace("runpod_api_base", "")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRANSCRIPTION_MAX_BATCH_SIZE", "abc", "TRANSCRIPTION_MAX_BATCH_SIZE='abc': expected a whole number of at least 1"),
        ("TRANSCRIPTION_MAX_BATCH_SIZE", "0", "TRANSCRIPTION_MAX_BATCH_SIZE='0': expected a whole number of at least 1"),
        ("TRANSCRIPTION_DEVICE", "gpu", "TRANSCRIPTION_DEVICE='gpu': expected auto, cpu, cuda or cuda:N"),
        ("TRANSCRIPTION_PRECISION", "fp8", "TRANSCRIPTION_PRECISION='fp8': expected one of auto, fp32, bf16, fp16"),
        ("TRANSCRIPTION_WINDOW_S", "0.5", "TRANSCRIPTION_WINDOW_S='0.5': expected a number of at least 1"),
        ("MAX_AUDIO_SECONDS", "-1", "MAX_AUDIO_SECONDS='-1': expected a number greater than 0"),
        ("MAX_AUDIO_SECONDS", "nan", "MAX_AUDIO_SECONDS='nan': expected a number greater than 0"),
        (
            "TRANSCRIPTION_WINDOW_OVERLAP_S",
            "70",
            "TRANSCRIPTION_WINDOW_S=120, TRANSCRIPTION_WINDOW_OVERLAP_S=70: window overlap must be in "
            "[0, window/2) (window 120.0 s, overlap 70.0 s)",
        ),
    ],
)  # fmt: skip
def test_a_bad_transcription_value_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        TranscriptionConfig.from_env({variable: value})
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DIARIZATION_DEVICE", "tpu", "DIARIZATION_DEVICE='tpu': expected auto, cpu, cuda or cuda:N"),
        ("DIARIZATION_FALLBACK", "yes", "DIARIZATION_FALLBACK='yes': expected one of none, offline"),
        ("DIARIZATION_EMBEDDING_BATCH_SIZE", "-2", "DIARIZATION_EMBEDDING_BATCH_SIZE='-2': expected a whole number of at least 1"),
        ("ORCHESTRATOR_BACKEND", "http", "ORCHESTRATOR_BACKEND='http': expected one of grpc, inprocess, runpod"),
        ("MAX_AUDIO_SECONDS", "4h", "MAX_AUDIO_SECONDS='4h': expected a number greater than 0"),
    ],
)  # fmt: skip
def test_a_bad_diarization_or_orchestrator_value_names_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        OrchestratorConfig.from_env({variable: value})
    assert str(refused.value) == message


def test_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAKEET_TEST_SETTING", " value ")
    assert Env().text("PARAKEET_TEST_SETTING") == "value"
    assert Env({}).text("PARAKEET_TEST_SETTING", "default") == "default"


# --- the same limits everywhere ------------------------------------------------------------------


def test_max_audio_seconds_limits_every_service() -> None:
    environ = {"MAX_AUDIO_SECONDS": "1"}
    one_second = AudioLimits(max_duration_s=1.0)
    assert TranscriptionConfig.from_env(environ).limits == one_second
    assert DiarizationConfig.from_env(environ).limits == one_second
    orchestrator = OrchestratorConfig.from_env(environ)
    assert orchestrator.transcription.limits == orchestrator.diarization.limits == one_second


def test_the_diarization_service_enforces_the_duration_limit() -> None:
    config = DiarizationConfig.from_env({"DIARIZATION_PIPELINE": "offline", "MAX_AUDIO_SECONDS": "1"})
    servicer = diarization_wiring.build_servicer(diarization_wiring.engine_for(config), config.limits)
    request = diarization_pb2.DiarizeRequest(audio=audio_pb2.Audio(content=silent_wav(2.0)))
    with pytest.raises(LimitExceeded) as refused:  # refused while decoding: the engine is never loaded
        servicer.Diarize(request, JobContext())
    assert refused.value.message == LIMIT_MESSAGE


def test_the_in_process_orchestrator_enforces_the_limit_on_both_halves() -> None:
    config = OrchestratorConfig.from_env(
        {"ORCHESTRATOR_BACKEND": "inprocess", "DIARIZATION_PIPELINE": "offline", "MAX_AUDIO_SECONDS": "1"}
    )
    backends = build_backends(config)
    assert isinstance(backends, InProcessBackends)
    audio = audio_pb2.Audio(content=silent_wav(2.0))
    with pytest.raises(LimitExceeded, match=LIMIT_MESSAGE):
        backends.transcribe(transcription_pb2.TranscribeRequest(audio=audio), JobContext())
    with pytest.raises(LimitExceeded, match=LIMIT_MESSAGE):
        backends.diarize(diarization_pb2.DiarizeRequest(audio=audio), JobContext())
    with pytest.raises(LimitExceeded, match=LIMIT_MESSAGE):
        OrchestratorServicer(backends).Orchestrate(
            orchestrator_pb2.OrchestrateRequest(audio=audio, diarize=True), JobContext()
        )


# --- the RunPod workers --------------------------------------------------------------------------


def test_a_worker_with_a_bad_variable_refuses_jobs_naming_it() -> None:
    with pytest.raises(PreconditionFailed) as refused:
        worker_config(lambda: TranscriptionConfig.from_env({"TRANSCRIPTION_MAX_BATCH_SIZE": "many"}))
    assert refused.value.message == (
        "the worker is misconfigured: TRANSCRIPTION_MAX_BATCH_SIZE='many': expected a whole number of at least 1"
    )


@pytest.mark.parametrize("service", ["transcription", "diarization", "orchestrator"])
def test_the_workers_do_not_import_the_grpc_server(service: str) -> None:
    """A RunPod worker builds its servicer from the config wiring, not from the gRPC server modules."""
    probe = (
        f"import sys, parakeet_server.{service}.handler\n"
        "print(sorted(name for name in sys.modules if name == 'parakeet_server.core.grpc_server'\n"
        "      or name == 'parakeet_server.cli' or name.endswith('.server') and name.startswith('parakeet_server')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_only_the_command_line_parses_flags() -> None:
    """argparse lives in parakeet_server/cli.py alone; everything else takes a config."""
    users = sorted(
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "parakeet_server").rglob("*.py")
        if re.search(r"\bargparse\b|\bargs\.", path.read_text())
    )
    assert users == ["parakeet_server/cli.py"]
