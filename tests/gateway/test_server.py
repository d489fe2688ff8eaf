"""The gateway's entry point: options, settings, and a real process serving the openai client."""

from __future__ import annotations

import argparse
import signal
import threading
import time

import httpx
import pytest
from openai import OpenAI

from parakeet_server.cli import build_parser, gateway_config
from parakeet_server.cli import main as cli_main
from parakeet_server.gateway.config import DEFAULT_MAX_UPLOAD_BYTES, GatewayConfig
from parakeet_server.orchestrator.server import hosted_service
from tests.gateway.conftest import ORCHESTRATOR, TEXT, WAV, Scripted
from tests.support.servers import free_port, wait_for_health


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["gateway", *argv])


def test_config_from_options_environment_and_token_file(tmp_path) -> None:
    environ = {"PARAKEET_AUTH_TOKEN": "from-env", "ORCHESTRATOR_ADDRESS": "orchestrator:50053"}
    defaults = gateway_config(parse(), environ)
    assert defaults == GatewayConfig(orchestrator="orchestrator:50053", auth_token="from-env")
    assert defaults.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 63 * 1024 * 1024
    assert "from-env" not in repr(defaults)
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    args = parse(
        "--orchestrator=10.0.0.5:1234",
        "--request-timeout=12.5",
        "--max-upload-mb=0.5",
        "--model-id=parakeet-x",
        f"--auth-token-file={token_file}",
        "--port=9000",
        "--grace=2",
    )
    assert gateway_config(args, environ) == GatewayConfig(
        orchestrator="10.0.0.5:1234",
        request_timeout_s=12.5,
        max_upload_bytes=512 * 1024,
        auth_token="from-file",
        model_id="parakeet-x",
        port=9000,
        grace_s=2.0,
    )


def test_config_from_the_environment_alone(tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(" file-token \n")
    environ = {
        "GATEWAY_PORT": "8080",
        "GATEWAY_REQUEST_TIMEOUT_S": "30",
        "GATEWAY_MAX_UPLOAD_MB": "2",
        "GATEWAY_MODEL_ID": "whisper-1",
        "PARAKEET_AUTH_TOKEN_FILE": str(token_file),
        "PARAKEET_AUTH_TOKEN": "ignored: the file wins",
        "ORCHESTRATOR_ADDRESS": "",  # empty: unset, the default applies
    }
    assert GatewayConfig.from_env(environ) == GatewayConfig(
        port=8080,
        request_timeout_s=30.0,
        max_upload_bytes=2 * 1024 * 1024,
        model_id="whisper-1",
        auth_token="file-token",
    )


def test_main_serves_and_drains_on_sigterm(spawn, start_host) -> None:
    host = start_host([hosted_service(Scripted(delay_s=0.5).servicer())])
    wait_for_health(host.address, ORCHESTRATOR)
    port = free_port()
    process = spawn(
        "python",
        "-m",
        "parakeet_server.gateway.server",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--orchestrator={host.address}",
        "--grace=1",
        env={"PARAKEET_AUTH_TOKEN": "tok"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the gateway did not become healthy"
        time.sleep(0.1)
    client = OpenAI(base_url=f"{url}/v1", api_key="tok", max_retries=0, timeout=30)
    assert client.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV)).text == TEXT
    assert httpx.get(f"{url}/v1/models", timeout=5).status_code == 401
    in_flight: list[str] = []
    caller = threading.Thread(
        target=lambda: in_flight.append(
            client.audio.transcriptions.create(model="m", file=("a.wav", WAV)).text
        )
    )
    caller.start()
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    caller.join(15)
    assert in_flight == [TEXT]  # the call in flight when SIGTERM came still got its answer
    assert process.wait(timeout=15) == 0


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--port=x", "argument --port: 'x': expected a whole number from 0 to 65535"),
        ("--max-upload-mb=big", "argument --max-upload-mb: 'big': expected a number greater than 0"),
    ],
)
def test_bad_options_are_refused(flag: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(flag)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GATEWAY_PORT", "http", "GATEWAY_PORT='http': expected a whole number from 0 to 65535"),
        ("GATEWAY_MAX_UPLOAD_MB", "0", "GATEWAY_MAX_UPLOAD_MB='0': expected a number greater than 0"),
    ],
)
def test_bad_variables_stop_the_gateway_with_one_line(
    variable: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["gateway"], {variable: value}) == 2
    assert capsys.readouterr().err == f"parakeet-server: error: {message}\n"
