"""`parakeet-server`: flags only by their full names, flags over variables, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from parakeet_server.cli import ServiceConfig, build_parser, main, server_options, service_configs
from parakeet_server.diarization.config import DiarizationConfig
from parakeet_server.orchestrator.config import OrchestratorConfig
from parakeet_server.transcription.config import TranscriptionConfig
from tests.support.servers import REPO_ROOT


@pytest.mark.parametrize("command", ["transcription", "diarization", "orchestrator", "all", "gateway"])
def test_a_token_typed_as_a_flag_prefix_is_refused(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # argparse would read `--auth-token s3cret` as `--auth-token-file s3cret`: a secret in `ps`,
    # then opened as a path. Without prefix matching it is an unknown option.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--auth-token", "s3cret"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --auth-token s3cret" in capsys.readouterr().err


def test_full_flag_names_still_parse() -> None:
    args = build_parser().parse_args(["transcription", "--auth-token-file", "/run/secrets/token"])
    assert args.auth_token_file == "/run/secrets/token"


def configs(*argv: str, environ: dict[str, str] | None = None) -> dict[str, ServiceConfig]:
    return service_configs(build_parser().parse_args(list(argv)), environ or {})


def test_device_in_all_sets_both_engines_and_the_specific_flags_override_it() -> None:
    stack = configs("all", "--device", "cpu")
    transcription, diarization, orchestrator = (
        stack["transcription"],
        stack["diarization"],
        stack["orchestrator"],
    )
    assert isinstance(transcription, TranscriptionConfig) and transcription.engine.device == "cpu"
    assert isinstance(diarization, DiarizationConfig) and diarization.device == "cpu"
    assert isinstance(orchestrator, OrchestratorConfig)
    assert (orchestrator.transcription.engine.device, orchestrator.diarization.device) == ("cpu", "cpu")

    split = configs(
        "all", "--device", "cpu", "--transcription-device", "cuda:1", "--diarization-device", "cuda"
    )
    assert isinstance(split["transcription"], TranscriptionConfig)
    assert isinstance(split["diarization"], DiarizationConfig)
    assert (split["transcription"].engine.device, split["diarization"].device) == ("cuda:1", "cuda")


def test_flags_override_their_variables_and_unset_flags_keep_them() -> None:
    environ = {
        "TRANSCRIPTION_DEVICE": "cuda",
        "DIARIZATION_DEVICE": "cpu",
        "TRANSCRIPTION_MAX_BATCH_SIZE": "8",
    }
    stack = configs("all", environ=environ)
    assert isinstance(stack["transcription"], TranscriptionConfig)
    assert isinstance(stack["diarization"], DiarizationConfig)
    assert (stack["transcription"].engine.device, stack["diarization"].device) == ("cuda", "cpu")
    assert stack["transcription"].batch.max_batch_size == 8
    (transcription,) = configs(
        "transcription", "--max-batch-size", "2", "--device", "cpu", environ=environ
    ).values()
    assert isinstance(transcription, TranscriptionConfig)
    assert (transcription.batch.max_batch_size, transcription.engine.device) == (2, "cpu")
    (diarization,) = configs(
        "diarization", "--device", "cuda:0", "--fallback-offline", environ=environ
    ).values()
    assert isinstance(diarization, DiarizationConfig)
    assert (diarization.device, diarization.fallback) == ("cuda:0", "offline")


def test_max_audio_seconds_reaches_every_service_of_the_command() -> None:
    stack = configs("all", "--max-audio-seconds", "60", environ={"MAX_AUDIO_SECONDS": "30"})
    limits = [
        config.limits
        for config in (stack["transcription"], stack["diarization"])
        if not isinstance(config, OrchestratorConfig)
    ]
    assert [limit.max_duration_s for limit in limits] == [60.0, 60.0]
    (diarization,) = configs("diarization", environ={"MAX_AUDIO_SECONDS": "30"}).values()
    assert isinstance(diarization, DiarizationConfig) and diarization.limits.max_duration_s == 30.0
    (orchestrator,) = configs("orchestrator", "--backend", "inprocess", "--max-audio-seconds", "5").values()
    assert isinstance(orchestrator, OrchestratorConfig) and orchestrator.backend == "inprocess"
    assert (
        orchestrator.transcription.limits.max_duration_s
        == orchestrator.diarization.limits.max_duration_s
        == 5.0
    )


def test_all_points_its_orchestrator_at_its_own_ports_unless_told_otherwise() -> None:
    (orchestrator,) = [
        c
        for c in configs("all", "--transcription-port", "6001", "--diarization-port", "6002").values()
        if isinstance(c, OrchestratorConfig)
    ]
    assert (orchestrator.transcription_address, orchestrator.diarization_address) == (
        "127.0.0.1:6001",
        "127.0.0.1:6002",
    )
    environ = {"TRANSCRIPTION_ADDRESS": "asr:50051"}
    (told,) = [c for c in configs("all", environ=environ).values() if isinstance(c, OrchestratorConfig)]
    assert (told.transcription_address, told.diarization_address) == ("asr:50051", "127.0.0.1:50052")


def test_an_empty_variable_falls_back_like_any_other() -> None:
    (transcription,) = configs("transcription", environ={"TRANSCRIPTION_MAX_BATCH_SIZE": ""}).values()
    assert isinstance(transcription, TranscriptionConfig) and transcription.batch.max_batch_size == 16
    args = build_parser().parse_args(["transcription"])
    assert (
        server_options(args, {"PARAKEET_MAX_CONCURRENT_REQUESTS": ""})[
            "transcription"
        ].max_concurrent_requests
        == 64
    )
    assert (
        server_options(args, {"PARAKEET_MAX_CONCURRENT_REQUESTS": "8"})[
            "transcription"
        ].max_concurrent_requests
        == 8
    )


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["transcription"], {"TRANSCRIPTION_MAX_BATCH_SIZE": "abc"}, "TRANSCRIPTION_MAX_BATCH_SIZE='abc': expected a whole number of at least 1"),
        (["diarization"], {"DIARIZATION_FALLBACK": "pyannote"}, "DIARIZATION_FALLBACK='pyannote': expected one of none, offline"),
        (["all"], {"MAX_AUDIO_SECONDS": "0"}, "MAX_AUDIO_SECONDS='0': expected a number greater than 0"),
        (["orchestrator"], {"PARAKEET_MAX_CONCURRENT_REQUESTS": "lots"}, "PARAKEET_MAX_CONCURRENT_REQUESTS='lots': expected a whole number of at least 1"),
        (["orchestrator"], {"PARAKEET_LOG_FORMAT": "xml"}, "PARAKEET_LOG_FORMAT='xml': expected one of text, json"),
        (["transcription", "--tls-cert", "cert.pem"], {}, "--tls-cert and --tls-key go together"),
    ],
)  # fmt: skip
def test_a_bad_setting_stops_the_server_with_one_line(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ) == 2
    assert capsys.readouterr().err == f"parakeet-server: error: {message}\n"


def test_a_bad_variable_is_no_traceback_in_the_real_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "parakeet_server.cli", "transcription"],
        cwd=REPO_ROOT,
        env={**os.environ, "TRANSCRIPTION_MAX_BATCH_SIZE": "sixteen"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "parakeet-server: error: TRANSCRIPTION_MAX_BATCH_SIZE='sixteen': expected a whole number of at least 1\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["transcription", "--max-batch-size", "0"], "argument --max-batch-size: '0': expected a whole number of at least 1"),
        (["all", "--device", "gpu"], "argument --device: 'gpu': expected auto, cpu, cuda or cuda:N"),
        (["orchestrator", "--backend", "http"], "argument --backend: 'http': expected one of grpc, inprocess, runpod"),
    ],
)  # fmt: skip
def test_a_bad_flag_names_itself(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_live_stream_limit_comes_from_its_flag_or_variable() -> None:
    parser = build_parser()
    plain = parser.parse_args(["transcription"])
    assert server_options(plain, {})["transcription"].max_live_streams == 32
    assert server_options(plain, {"PARAKEET_MAX_LIVE_STREAMS": "5"})["transcription"].max_live_streams == 5
    flagged = parser.parse_args(["all", "--max-live-streams", "3"])
    options = server_options(flagged, {"PARAKEET_MAX_LIVE_STREAMS": "5"})
    assert {name: o.max_live_streams for name, o in options.items()} == {
        "transcription": 3,
        "diarization": 3,
        "orchestrator": 3,
    }


def test_live_limits_come_from_their_variables() -> None:
    from parakeet_server.core.settings import ConfigError, Env, live_limits

    limits = live_limits(Env({"STREAM_IDLE_TIMEOUT_S": "5", "MAX_STREAM_SECONDS": ""}))
    assert (limits.idle_timeout_s, limits.max_stream_seconds) == (5.0, 4 * 3600.0)
    with pytest.raises(ConfigError, match="STREAM_IDLE_TIMEOUT_S"):
        live_limits(Env({"STREAM_IDLE_TIMEOUT_S": "0"}))


def test_the_live_limits_reach_every_service_of_the_command() -> None:
    environ = {"STREAM_IDLE_TIMEOUT_S": "7", "MAX_STREAM_SECONDS": "60"}
    found = configs("all", environ=environ)
    assert {
        name: (c.live_limits.idle_timeout_s, c.live_limits.max_stream_seconds) for name, c in found.items()
    } == {
        "transcription": (7.0, 60.0),
        "diarization": (7.0, 60.0),
        "orchestrator": (7.0, 60.0),
    }
    orchestrator = found["orchestrator"]
    assert isinstance(orchestrator, OrchestratorConfig)
    assert orchestrator.diarization.live_limits.idle_timeout_s == 7.0
