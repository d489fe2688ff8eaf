"""Two distributions: the client (clients/python, parakeet-client) never imports the server, pins
what requirements.lock pins, and finds the server's embedded mode only through its entry point."""

from __future__ import annotations

import ast
import tomllib
from importlib.metadata import EntryPoints, entry_points
from pathlib import Path

import pytest

import parakeet
from parakeet import cli, orchestrate_request
from parakeet.errors import FailedPrecondition
from tests.support.servers import REPO_ROOT

CLIENT_ROOT = REPO_ROOT / "clients" / "python"
CLIENT = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text())["project"]
SERVER = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports: import statements, and import_module/__import__ of a literal."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def test_the_client_package_never_imports_the_server() -> None:
    sources = sorted((CLIENT_ROOT / "parakeet").rglob("*.py"))
    assert len(sources) > 10
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "parakeet_server"
        )
        for path in sources
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_walk_finds_server_imports_wherever_they_hide(tmp_path: Path) -> None:
    source = tmp_path / "sneaky.py"
    source.write_text(
        "import importlib\n"
        "def f():\n    from parakeet_server.core import errors\n"
        "importlib.import_module('parakeet_server.embedded')\n"
        "import parakeet_server\n"
    )
    assert {"parakeet_server.core", "parakeet_server.embedded", "parakeet_server"} <= imported_modules(source)


def locked() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements.lock").read_text().splitlines()
    return {
        normalise(line.split("==")[0]): line.split("==")[1]
        for line in lines
        if "==" in line and not line.startswith("#")
    }


def normalise(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def test_the_client_pins_only_grpc_protobuf_and_tqdm_and_the_lock_agrees() -> None:
    pins = dict(requirement.split("==") for requirement in CLIENT["dependencies"])
    assert set(pins) == {
        "grpcio",
        "grpcio-health-checking",
        "grpcio-status",
        "googleapis-common-protos",
        "protobuf",
        "tqdm",  # parakeet batch's progress bar
    }
    lock = locked()
    assert {name: lock.get(normalise(name)) for name in pins} == pins
    # Pinned once: the server's pyproject leaves these to the client it depends on.
    server_names = {normalise(r.split("==")[0].split("[")[0]) for r in SERVER["dependencies"]}
    assert server_names.isdisjoint({normalise(name) for name in pins})


def test_the_server_depends_on_the_client_of_the_same_version() -> None:
    assert f"{CLIENT['name']}=={CLIENT['version']}" in SERVER["dependencies"]
    assert CLIENT["version"] == SERVER["version"] == parakeet.__version__
    assert CLIENT["scripts"] == {"parakeet": "parakeet.cli:main"}
    assert SERVER["scripts"] == {"parakeet-server": "parakeet_server.cli:main"}
    assert "parakeet-client" not in locked() and "parakeet-grpc" not in locked()


def test_the_server_registers_the_embedded_mode_the_cli_looks_up() -> None:
    declared = SERVER["entry-points"][cli.EMBEDDED_GROUP]
    assert declared == {
        "orchestrate": "parakeet_server.embedded:orchestrate",
        "stream": "parakeet_server.embedded:stream",
        "orchestrator": "parakeet_server.embedded:orchestrator",
        "enroll": "parakeet_server.embedded:enroll",
    }
    from parakeet_server import embedded

    assert cli.embedded_mode() is embedded.orchestrate
    assert cli.embedded_stream() is embedded.stream
    assert embedded.INSTALL == cli.EMBEDDED_INSTALL


def test_without_the_server_the_cli_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda **_select: EntryPoints(()))
    audio = tmp_path / "call.wav"
    audio.write_bytes(b"RIFF")
    with pytest.raises(SystemExit) as exited:
        cli.main(["transcribe", str(audio)])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "parakeet: error: no --server or --runpod given, and the embedded mode (the models in this "
        "process) is not installed: pip install 'parakeet-grpc[asr,diarization]', or use --server "
        "HOST:PORT or --runpod ENDPOINT_ID\n"
    )
    assert entry_points(group=cli.EMBEDDED_GROUP, name="orchestrate")  # only this test lost it


def test_embedded_failures_are_the_clients_errors_with_the_servers_reason() -> None:
    from parakeet_server.embedded import orchestrate

    with pytest.raises(FailedPrecondition) as raised:
        orchestrate(orchestrate_request(b"RIFF"), model="/nonexistent/model.nemo")
    assert raised.value.reason == "FAILED_PRECONDITION"
    assert "/nonexistent/model.nemo" in raised.value.details
