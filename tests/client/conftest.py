"""Client fixtures: the fixture models loaded once, a real in-process gRPC server hosting all three
services over them, the expected answers computed straight through the orchestrator servicer,
and an HTTP server on loopback for URL audio."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import grpc
import pytest

# Nothing here may reach the Hugging Face Hub; set before huggingface_hub reads it at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from parakeet import ParakeetClient, orchestrate_request
from parakeet.v1 import diarization_pb2_grpc, orchestrator_pb2
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.context import JobContext
from parakeet_server.core.grpc_server import HostedService, ServerOptions
from parakeet_server.diarization import server as diarization_server
from parakeet_server.diarization.pyannote_engine import PyannoteEngine
from parakeet_server.diarization.servicer import DiarizationServicer
from parakeet_server.orchestrator import server as orchestrator_server
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from parakeet_server.transcription import server as transcription_server
from parakeet_server.transcription.engine import TranscriptionEngine, TranscriptionEngineConfig
from parakeet_server.transcription.runner import TranscriptionRunner
from parakeet_server.transcription.servicer import TranscriptionServicer
from tests.diarization.helpers import synthesize
from tests.fixtures.pyannote_pipeline import build_pyannote_fixture, hub_dir
from tests.support.audio import sweep, wav_bytes
from tests.support.servers import REPO_ROOT, wait_for_health

PYANNOTE_ROOT = REPO_ROOT / "tests" / "fixtures" / "models" / "pyannote"
# 4 s of tone sweeps: the fixture TDT model hears 17 words in it; pyannote finds one speaker.
WAV = wav_bytes(sweep(4.0, seed=5))
# 12 s of four alternating sounds: with num_speakers=2 the fixture pipeline finds two speakers.
SPEECH = synthesize()
# Bearer-token checks and request ids in the servers' interceptor, landing separately.
SERVER_HAS_AUTH = "auth_token" in ServerOptions.__dataclass_fields__
needs_server_auth = pytest.mark.skipif(not SERVER_HAS_AUTH, reason="the server has no auth_token option yet")


@pytest.fixture(scope="session")
def pyannote_pipeline() -> Path:
    """The random-weight speaker-diarization-3.1 look-alike as a local pipeline directory."""
    return build_pyannote_fixture(PYANNOTE_ROOT)


@pytest.fixture(scope="session")
def pyannote_hub(pyannote_pipeline: Path) -> Path:
    """The same fixture as a Hugging Face hub cache (for HF_HUB_CACHE), repos by their ids."""
    return hub_dir(PYANNOTE_ROOT)


@pytest.fixture(scope="session")
def transcription_servicer(tdt_model_path: Path) -> Iterator[TranscriptionServicer]:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(tdt_model_path)))
    engine.load()
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=8, max_wait_ms=5.0))
    yield TranscriptionServicer(runner)
    runner.close()


@pytest.fixture(scope="session")
def diarization_servicer(pyannote_pipeline: Path) -> DiarizationServicer:
    engine = PyannoteEngine(str(pyannote_pipeline), device="cpu")
    engine.load()
    return DiarizationServicer(engine)


@pytest.fixture(scope="session")
def orchestrator(
    transcription_servicer: TranscriptionServicer, diarization_servicer: DiarizationServicer
) -> OrchestratorServicer:
    """The orchestrator over the loaded engines, as `--backend inprocess` builds it."""
    backends = InProcessBackends(
        transcription_servicer.Transcribe, diarization_servicer.Diarize, warm_up=lambda: None
    )
    return OrchestratorServicer(backends)


@pytest.fixture(scope="session")
def expected(
    orchestrator: OrchestratorServicer,
) -> Callable[..., orchestrator_pb2.OrchestrateResponse]:
    """What OrchestratorService answers for (audio, **options), straight from the servicer; cached."""
    cache: dict[object, orchestrator_pb2.OrchestrateResponse] = {}

    def answer(audio: bytes, **options: object) -> orchestrator_pb2.OrchestrateResponse:
        key = (audio, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = orchestrator.Orchestrate(orchestrate_request(audio, **options), JobContext())
        return cache[key]

    return answer


def _diarization_service(servicer: DiarizationServicer) -> HostedService:
    """DiarizationService over the loaded engine, without the per-server warm-up pass."""

    def register(server: grpc.Server) -> None:
        diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(servicer, server)

    return HostedService(name=diarization_server.SERVICE_NAME, register=register)


@pytest.fixture
def address(
    start_host,
    transcription_servicer: TranscriptionServicer,
    diarization_servicer: DiarizationServicer,
    orchestrator: OrchestratorServicer,
) -> str:
    """A real gRPC server on loopback hosting all three services, SERVING."""
    host = start_host(
        [
            transcription_server.hosted_service(transcription_servicer),
            _diarization_service(diarization_servicer),
            orchestrator_server.hosted_service(orchestrator),
        ]
    )
    wait_for_health(host.address)
    return host.address


@pytest.fixture
def client(address: str) -> Iterator[ParakeetClient]:
    with ParakeetClient(address, timeout=60.0) as parakeet:
        yield parakeet


@pytest.fixture
def audio_files(tmp_path: Path) -> dict[str, Path]:
    """The test recordings on disk (the CLI and path audio read files)."""
    files = {"wav": tmp_path / "sweep.wav", "speech": tmp_path / "speech.wav", "bad": tmp_path / "bad.wav"}
    files["wav"].write_bytes(WAV)
    files["speech"].write_bytes(SPEECH)
    files["bad"].write_bytes(b"not audio at all" * 50)
    return files


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves the in-memory files of `routes`; 404 for anything else."""

    routes: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet: the test output is not the place for access logs."""


@pytest.fixture
def http_audio(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Base URL of an HTTP server on 127.0.0.1 serving /sweep.wav, which the fetcher may reach."""
    monkeypatch.setenv("PARAKEET_FETCH_ALLOW", "127.0.0.1")
    handler = type("Files", (_Files,), {"routes": {"/sweep.wav": WAV, "/speech.wav": SPEECH}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
