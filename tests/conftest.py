"""Shared test fixtures: in-process servers on free ports, channels, and subprocess helpers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

# The test suite never reaches the Hugging Face Hub; set before huggingface_hub reads it at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parakeet_server.core.grpc_server import HostedService, ServerOptions, ServiceHost

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MODELS_DIR = REPO_ROOT / "tests" / "fixtures" / "models"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`espeak`-marked tests need Debian's espeak-ng (make setup installs it where it can).

    On a developer's machine without it they skip; in CI (CI set) a missing espeak-ng fails
    them, so the accuracy floors can never pass by not running."""
    if item.get_closest_marker("espeak") and shutil.which("espeak-ng") is None:
        message = "espeak-ng is not installed (apt-get install espeak-ng sox; make setup does it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_status(address: str, service: str = "", timeout: float = 2.0) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status


def wait_for_health(
    address: str,
    service: str = "",
    want: int = health_pb2.HealthCheckResponse.SERVING,
    timeout: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = process.output()[-3000:] if isinstance(process, Spawned) else ""
            raise AssertionError(f"server exited with {process.returncode} before becoming healthy\n{log}")
        try:
            last = health_status(address, service)
            if last == want:
                return
        except grpc.RpcError as error:
            last = error.code()
        time.sleep(0.1)
    raise AssertionError(f"{address} {service!r} not in state {want} after {timeout}s (last: {last})")


@pytest.fixture
def start_host() -> Iterator[Callable[[Sequence[HostedService]], ServiceHost]]:
    """Start ServiceHosts on free loopback ports; drain them when the test ends."""
    hosts: list[ServiceHost] = []

    def start(services: Sequence[HostedService], **options: object) -> ServiceHost:
        host = ServiceHost(services, ServerOptions(host="127.0.0.1", port=0, grace_s=1.0, **options))  # type: ignore[arg-type]
        host.start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.drain(0.5)


class Spawned(subprocess.Popen[bytes]):
    """A child process whose output goes to a log file (a pipe nobody reads can fill and block it)."""

    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_process(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> Spawned:
    with log_path.open("wb") as log:
        process = Spawned(
            command, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    process.log_path = log_path
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    """Run console scripts from this venv as real processes; kill leftovers at teardown."""
    processes: list[Spawned] = []

    def run(*args: str, env: dict[str, str] | None = None) -> Spawned:
        log_path = tmp_path / f"process-{len(processes)}.log"
        process = start_process([str(VENV_BIN / args[0]), *args[1:]], log_path, env)
        processes.append(process)
        return process

    yield run
    for process in processes:
        stop_process(process)


@pytest.fixture(scope="session")
def tdt_model_path() -> Path:
    """The random-weight parakeet-style TDT fixture (.nemo), built once and cached on disk."""
    from tests.fixtures.nemo_tdt import build_tdt_fixture

    return build_tdt_fixture(MODELS_DIR / "parakeet-tdt-tiny-v1.nemo")


@pytest.fixture(scope="session")
def pyannote_pipeline_path() -> Path:
    """The random-weight pyannote 3.1-style pipeline: a local pipeline dir (hub cache beside it)."""
    from tests.fixtures.pyannote_pipeline import build_pyannote_fixture

    return build_pyannote_fixture(MODELS_DIR / "pyannote")
