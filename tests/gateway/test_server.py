"""The gateway's entry point: options, settings, and a real process serving the openai client."""

from __future__ import annotations

import argparse
import signal
import threading
import time

import httpx
import pytest
from openai import OpenAI

from parakeet_server.gateway import server
from parakeet_server.gateway.settings import DEFAULT_MAX_UPLOAD_BYTES, GatewaySettings
from parakeet_server.orchestrator.server import hosted_service
from tests.gateway.conftest import ORCHESTRATOR, TEXT, WAV, Scripted
from tests.support.servers import free_port, wait_for_health


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    server.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_settings_from_options_environment_and_token_file(monkeypatch, tmp_path) -> None:
    for name in (
        "PARAKEET_AUTH_TOKEN_FILE",
        "GATEWAY_REQUEST_TIMEOUT_S",
        "GATEWAY_MAX_UPLOAD_MB",
        "GATEWAY_MODEL_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARAKEET_AUTH_TOKEN", "from-env")
    monkeypatch.setenv("ORCHESTRATOR_ADDRESS", "orchestrator:50053")
    defaults = server.settings_from_args(parse())
    assert defaults == GatewaySettings(orchestrator="orchestrator:50053", auth_token="from-env")
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
    )
    assert server.settings_from_args(args) == GatewaySettings(
        orchestrator="10.0.0.5:1234",
        request_timeout_s=12.5,
        max_upload_bytes=512 * 1024,
        auth_token="from-file",
        model_id="parakeet-x",
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


@pytest.mark.parametrize("flag", ["--port=x", "--max-upload-mb=big"])
def test_bad_options_are_refused(flag: str) -> None:
    with pytest.raises(SystemExit):
        parse(flag)
