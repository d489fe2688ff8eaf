"""Shared fixtures of the reliability suite: a loopback HTTP server that records every request,
a resolver guard (the tests never send a DNS query), and real server processes over the fixture
models for the fault and load tests.

Network rule: everything here listens on, and connects to, 127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from parakeet_server.core import fetch
from tests.reliability import media
from tests.support.servers import VENV_BIN, Spawned, free_port, start_process, stop_process, wait_for_health

TRANSCRIPTION_SERVICE = "parakeet.v1.TranscriptionService"
DIARIZATION_SERVICE = "parakeet.v1.DiarizationService"
ORCHESTRATOR_SERVICE = "parakeet.v1.OrchestratorService"
# Model servers take ~15 s to import and warm up alone; other test runs may share the 2 cores.
START_TIMEOUT_S = 300.0


# -- loopback HTTP server -----------------------------------------------------------------------


class _Routes(http.server.BaseHTTPRequestHandler):
    """Audio, redirects and failures for the URL cases; every request is recorded in `hits`."""

    hits: ClassVar[list[str]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.hits.append(self.path)
        redirects = {
            "/to-private": "http://10.0.0.7/a.wav",
            "/to-metadata": "http://169.254.169.254/latest/meta-data/",
            "/to-file": "file:///etc/passwd",
            "/loop": "/loop",
        }
        if self.path in redirects:
            self._answer(302, b"", {"Location": redirects[self.path]})
        elif self.path in ("/good.wav", "/segment.wav"):
            self._answer(200, media.good_wav(), {"Content-Type": "audio/wav"})
        elif self.path == "/text":
            self._answer(200, media.NOT_AUDIO, {"Content-Type": "text/plain"})
        elif self.path == "/trickle":
            self._trickle()
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(3 * 1024 * 1024))
            self.end_headers()
        else:
            self._answer(404, b"not here", {})

    def _trickle(self) -> None:
        """One byte every 0.2 s (never slow enough for a read timeout), for at most 6 s; records
        "/trickle closed" once the client has gone or the time is up."""
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        started = time.monotonic()
        try:
            while time.monotonic() - started < 6.0:
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass
        with self.lock:
            self.hits.append(f"/trickle closed after {time.monotonic() - started:.1f}s")

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@dataclass
class Loopback:
    """The running server: its base URL and the paths requested so far."""

    url: str
    hits: list[str]

    def hits_since(self, count: int) -> list[str]:
        return self.hits[count:]


@pytest.fixture(scope="session")
def loopback() -> Iterator[Loopback]:
    handler = type("Routes", (_Routes,), {"hits": [], "lock": threading.Lock()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Loopback(f"http://127.0.0.1:{server.server_address[1]}", handler.hits)
    server.shutdown()
    server.server_close()


# -- resolver guard ---------------------------------------------------------------------------


class ResolverGuard:
    """Stands in for the `socket` module inside parakeet_server.core.fetch.

    IP literals and "localhost" (from /etc/hosts) resolve as usual; any other name is recorded
    and refused without a query, so no test input can make the service send DNS traffic; a
    literal public address is recorded and refused too, so nothing can be fetched from outside.
    Names the real resolver refuses before querying (labels over 63 characters) fail the same way.
    """

    SOCK_STREAM = socket.SOCK_STREAM
    gaierror = socket.gaierror

    def __init__(self) -> None:
        self.refused: list[str] = []

    def getaddrinfo(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        host.encode("idna")  # UnicodeError for what the real resolver also rejects unsent
        if host.lower() == "localhost":
            return socket.getaddrinfo(host, port, *args, **kwargs)
        try:
            infos = socket.getaddrinfo(host, port, *args, flags=socket.AI_NUMERICHOST, **kwargs)
        except socket.gaierror:
            self.refused.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "the reliability tests resolve no names") from None
        if any(ipaddress.ip_address(info[4][0].split("%")[0]).is_global for info in infos):
            self.refused.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "the reliability tests reach no public address")
        return infos


@pytest.fixture(scope="module")
def resolver_guard() -> Iterator[ResolverGuard]:
    guard = ResolverGuard()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fetch, "socket", guard)
        yield guard


# -- real server processes --------------------------------------------------------------------


def scrubbed_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: offline, no fetch allow-list, no token, one thread."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PARAKEET_FETCH_ALLOW", "PARAKEET_AUTH_TOKEN")
    }
    # One intra-op thread per model process: the fixture models are tiny, and on a small shared
    # machine several processes each spinning two OpenMP threads run several times slower.
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "PARAKEET_FETCH_ALLOW": "",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            **extra,
        }
    )
    return env


@dataclass
class ServerProcess:
    """One `parakeet-server` process on fixed ports, restartable on the same ports."""

    name: str
    service: str
    port: int
    arguments: list[str]
    log_dir: Path
    metrics_port: int = 0
    process: Spawned | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        command = [
            str(VENV_BIN / "parakeet-server"),
            self.name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.arguments,
        ]
        if self.metrics_port:
            command += ["--metrics-port", str(self.metrics_port)]
        self.starts += 1
        self.process = start_process(command, self.log_dir / f"{self.name}-{self.starts}.log", scrubbed_env())

    def wait_until_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        wait_for_health(self.address, self.service, timeout=timeout, process=self.process)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None and self.process.poll() is None
        os.kill(self.process.pid, signum)

    def output(self) -> str:
        return self.process.output() if self.process is not None else ""

    def in_flight(self, method: str) -> float:
        """parakeet_requests_in_flight{method=...} from the server's Prometheus endpoint."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
        prefix = f'parakeet_requests_in_flight{{method="{method}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.removeprefix(prefix))
        return 0.0

    def wait_for_in_flight(self, method: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.in_flight(method) >= 1:
                return
            assert self.alive(), self.output()[-3000:]
            time.sleep(0.02)
        raise AssertionError(f"no {method} call in flight on {self.name} after {timeout}s")


@dataclass
class Stack:
    """transcription + diarization model servers and an orchestrator calling them over gRPC."""

    transcription: ServerProcess
    diarization: ServerProcess
    orchestrator: ServerProcess
    servers: list[ServerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.servers = [self.transcription, self.diarization, self.orchestrator]


@pytest.fixture(scope="session")
def stack_processes(
    tdt_model_path: Path, pyannote_pipeline_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Real processes, started (not yet waited for): `parakeet-server transcription`,
    `parakeet-server diarization` and `parakeet-server orchestrator --backend grpc` calling them."""
    logs = tmp_path_factory.mktemp("stack")
    transcription = ServerProcess(
        "transcription",
        TRANSCRIPTION_SERVICE,
        free_port(),
        ["--model", str(tdt_model_path), "--device", "cpu", "--max-concurrent-requests", "512"],
        logs,
    )
    diarization = ServerProcess(
        "diarization",
        DIARIZATION_SERVICE,
        free_port(),
        ["--pipeline", str(pyannote_pipeline_path), "--diarization-device", "cpu", "--grace", "60"],
        logs,
        metrics_port=free_port(),
    )
    orchestrator = ServerProcess(
        "orchestrator",
        ORCHESTRATOR_SERVICE,
        free_port(),
        [
            "--backend",
            "grpc",
            "--transcription-address",
            transcription.address,
            "--diarization-address",
            diarization.address,
        ],
        logs,
    )
    running = Stack(transcription, diarization, orchestrator)
    try:
        for server in running.servers:
            server.start()
        yield running
    finally:
        for server in running.servers:
            if server.alive():
                assert server.process is not None
                os.kill(server.process.pid, signal.SIGCONT)
            server.kill()


@pytest.fixture(scope="session")
def stack(stack_processes: Stack) -> Stack:
    """The stack, every server SERVING."""
    for server in stack_processes.servers:
        server.wait_until_serving()
    return stack_processes


@pytest.fixture(scope="session", autouse=True)
def _start_the_stack_early(request: pytest.FixtureRequest) -> None:
    """Model servers take a while to import and warm up: when the session will need the stack,
    start it with the first reliability test so that it comes up while other tests run."""
    if any(
        Path(str(item.fspath)).name in ("test_faults.py", "test_load.py") for item in request.session.items
    ):
        request.getfixturevalue("stack_processes")


def process_rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def run_quietly(
    command: list[str], timeout: float, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded by `timeout`), capturing its output as text."""
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=scrubbed_env(), check=False
    )
