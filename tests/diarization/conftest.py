"""Diarization fixtures: the random-weight pyannote pipeline, one loaded engine, one gRPC server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from parakeet_server.core.grpc_server import ServerOptions, ServiceHost
from parakeet_server.diarization import server
from parakeet_server.diarization.pyannote_engine import PyannoteEngine
from tests.diarization.helpers import decoded, direct_turns, synthesize
from tests.fixtures.pyannote_pipeline import hub_dir
from tests.support.servers import REPO_ROOT, wait_for_health

FIXTURE_ROOT = REPO_ROOT / "tests" / "fixtures" / "models" / "pyannote"


@dataclass(frozen=True)
class PyannoteFixture:
    """Where the built fixture lives: the hub cache (repos by id) and the local pipeline dir."""

    root: Path
    hub: Path
    local_pipeline: Path


@pytest.fixture(scope="session")
def pyannote_fixture(pyannote_pipeline_path: Path) -> PyannoteFixture:
    return PyannoteFixture(
        root=FIXTURE_ROOT, hub=hub_dir(FIXTURE_ROOT), local_pipeline=pyannote_pipeline_path
    )


@pytest.fixture(scope="session")
def engine(pyannote_fixture: PyannoteFixture) -> PyannoteEngine:
    """One engine over the local pipeline dir, loaded once for the session (on CPU, as CI has)."""
    loaded = PyannoteEngine(str(pyannote_fixture.local_pipeline), device="cpu")
    loaded.load()
    return loaded


@pytest.fixture(scope="session")
def diarization_address(engine: PyannoteEngine) -> Iterator[str]:
    """A gRPC server hosting the DiarizationService over the shared engine, SERVING."""
    host = ServiceHost([server.hosted_service(engine)], ServerOptions(host="127.0.0.1", port=0, grace_s=1.0))
    host.start()
    wait_for_health(host.address, server.SERVICE_NAME, timeout=120)
    yield host.address
    host.drain(0.5)


@pytest.fixture(scope="session")
def speech() -> bytes:
    """The 12 s WAV file most tests send."""
    return synthesize()


@pytest.fixture(scope="session")
def reference(engine: PyannoteEngine, speech: bytes) -> Callable[..., list[tuple[float, float, str]]]:
    """Turns of a direct pyannote call on `speech`, per option set (computed once each)."""
    waveform = decoded(speech)
    cache: dict[object, list[tuple[float, float, str]]] = {}

    def turns(exclusive: bool = False, **counts: int) -> list[tuple[float, float, str]]:
        key = (exclusive, tuple(sorted(counts.items())))
        if key not in cache:
            cache[key] = direct_turns(engine.pyannote_pipeline, waveform, exclusive, **counts)
        return cache[key]

    return turns
