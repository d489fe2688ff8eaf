"""Servers for tests and benchmarks: free loopback ports, child processes whose output goes to a log,
waiting for gRPC health or an HTTP API to answer, JSON over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODELS_DIR = REPO_ROOT / "tests" / "fixtures" / "models"
SERVING = health_pb2.HealthCheckResponse.SERVING


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it), for a server about to start."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Spawned(subprocess.Popen[bytes]):
    """A child process whose output goes to a log file (a pipe nobody reads can fill and block it)."""

    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_process(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> Spawned:
    """Run `command` from the repository root with `env` over this environment, output to `log_path`."""
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        process = Spawned(
            command, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    process.log_path = log_path
    return process


def stop_process(process: subprocess.Popen[bytes], grace: float = 0.0) -> None:
    """Stop a child: SIGTERM and up to `grace` seconds to drain when grace > 0, then SIGKILL."""
    if process.poll() is None and grace > 0:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def _tail(process: subprocess.Popen[bytes]) -> str:
    return process.output()[-3000:] if isinstance(process, Spawned) else ""


def health_status(address: str, service: str = "", timeout: float = 2.0) -> int:
    """One grpc.health.v1 Check of `service` ("" is the whole server)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status: int = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status
        return status


def wait_for_health(
    address: str,
    service: str = "",
    want: int = SERVING,
    timeout: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Until `service` at `address` reports `want`; fails early, with its log, if `process` exits."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"server exited with {process.returncode} before becoming healthy\n{_tail(process)}"
            )
        try:
            last = health_status(address, service)
            if last == want:
                return
        except grpc.RpcError as error:
            last = error.code()
        time.sleep(0.1)
    raise AssertionError(f"{address} {service!r} not in state {want} after {timeout}s (last: {last})")


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    """Until `url` answers with any HTTP status (the API is up); fails early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before {url} answered:\n{_tail(process)}")
        try:
            urllib.request.urlopen(url, timeout=1.0).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout}s:\n{_tail(process)}")


def post_json(url: str, body: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """POST `body` as JSON and return the JSON reply (a RunPod worker's /runsync, for one)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply: dict[str, Any] = json.loads(response.read())
    return reply


def start_server(
    kind: str,
    *options: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout: float = 240.0,
) -> tuple[Spawned, str]:
    """`parakeet-server KIND OPTIONS` on a free loopback port, returned once its health says SERVING.

    A server that exits or does not serve in `timeout` is stopped and the failure names its log."""
    port = free_port()
    command = [str(VENV_BIN / "parakeet-server"), kind, "--host", "127.0.0.1", "--port", str(port), *options]
    process = start_process(command, log_path, env)
    address = f"127.0.0.1:{port}"
    try:
        wait_for_health(address, timeout=timeout, process=process)
    except AssertionError as error:
        stop_process(process)
        raise RuntimeError(f"parakeet-server {kind} did not serve (log: {log_path}): {error}") from None
    return process, address


def wait_for_worker(port: int, process: subprocess.Popen[bytes], timeout: float = 180.0) -> str:
    """A RunPod worker's local test API (`--rp_serve_api`): its base URL once /docs answers,
    which is after the model loaded and warmed up."""
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/docs", process, timeout)
    return base


def completed(reply: dict[str, Any]) -> dict[str, Any]:
    """The output of a RunPod /runsync reply, which must say COMPLETED."""
    assert reply["status"] == "COMPLETED", reply
    output: dict[str, Any] = reply["output"]
    return output
