"""The gateway over a real in-process gRPC OrchestratorService, served by uvicorn on a loopback port.

The orchestrator's backends are scripted stand-ins (fixed words and speaker turns, as in
tests/orchestrator/test_servicer.py) that still decode the uploaded audio with the services'
decoder, so durations are real and undecodable files fail the way they do in production. They
also record what reached them, metadata included, so forwarding can be asserted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import uvicorn
from openai import OpenAI

from parakeet.v1 import audio_pb2, diarization_pb2, transcription_pb2
from parakeet_server.core.audio import AudioLimits, load_audio
from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.config import GatewayConfig
from parakeet_server.orchestrator.backends import InProcessBackends
from parakeet_server.orchestrator.server import hosted_service
from parakeet_server.orchestrator.servicer import OrchestratorServicer
from tests.support.audio import sweep, wav_bytes
from tests.support.servers import wait_for_health

ORCHESTRATOR = "parakeet.v1.OrchestratorService"
WAV = wav_bytes(sweep(5.0, seed=3))
WORDS = [("Hello", 0.0, 0.4), ("there.", 0.5, 0.9), ("Hi", 1.6, 1.8), ("back.", 1.9, 2.3), ("Bye.", 4.5, 4.9)]
TURNS = [(0.0, 1.0, "SPEAKER_00"), (1.5, 2.5, "SPEAKER_01"), (4.4, 5.0, "SPEAKER_00")]
TEXT = "Hello there. Hi back. Bye."
TRANSCRIPTION_MODEL = "parakeet-tdt-0.6b-v2"
DIARIZATION_MODEL = "pyannote/speaker-diarization-3.1"


@dataclass
class Scripted:
    """Stand-in backends: fixed transcript and turns for whatever decodable audio arrives."""

    delay_s: float = 0.0
    # When set, transcribe waits for it: a call is then known to be in flight until the test sets it.
    gate: threading.Event | None = None
    warm_up_error: Exception | None = None
    # When set, transcribe raises it once the audio is decoded (a backend's refusal).
    transcribe_error: Exception | None = None
    limits: AudioLimits = field(default_factory=AudioLimits)
    transcribe_requests: list[transcription_pb2.TranscribeRequest] = field(default_factory=list)
    diarize_requests: list[diarization_pb2.DiarizeRequest] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def transcribe(self, request: transcription_pb2.TranscribeRequest, context: Any):
        waveform = load_audio(request.audio, self.limits)
        with self.lock:
            self.transcribe_requests.append(request)
            self.metadata.append(dict(context.invocation_metadata()))
        if self.transcribe_error is not None:
            raise self.transcribe_error
        time.sleep(self.delay_s)
        if self.gate is not None:
            self.gate.wait(10)
        return transcription_pb2.TranscribeResponse(
            text=TEXT,
            words=[audio_pb2.Word(word=w, start=s, end=e) for w, s, e in WORDS],
            segments=[
                audio_pb2.Segment(id=0, start=0.0, end=2.3, text="Hello there. Hi back."),
                audio_pb2.Segment(id=1, start=4.5, end=4.9, text="Bye."),
            ],
            duration=waveform.duration,
            language="en",
            model=TRANSCRIPTION_MODEL,
        )

    def diarize(self, request: diarization_pb2.DiarizeRequest, context: Any):
        with self.lock:
            self.diarize_requests.append(request)
        return diarization_pb2.DiarizeResponse(
            segments=[audio_pb2.SpeakerTurn(start=s, end=e, speaker=spk) for s, e, spk in TURNS],
            num_speakers=2,
            duration=5.0,
            model=DIARIZATION_MODEL,
        )

    def warm_up(self) -> None:
        if self.warm_up_error is not None:
            raise self.warm_up_error

    def servicer(self) -> OrchestratorServicer:
        return OrchestratorServicer(InProcessBackends(self.transcribe, self.diarize, self.warm_up))


@contextlib.contextmanager
def serve_http(app: Any, **options: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread on a loopback socket bound here (no port race).

    `options` go to uvicorn.Config (e.g. `http="h11"`; the default is httptools, as in production).
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Gateway:
    url: str
    backends: Scripted | None = None
    orchestrator_address: str = ""

    def client(self, api_key: str = "sk-anything", **options: Any) -> OpenAI:
        """The official client, without retries so a refusal is seen as it is."""
        return OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=30.0, **options)


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def start_gateway(start_host) -> Iterator[GatewayFactory]:
    """start_gateway(backends=Scripted(), settings=..., wait=True, **host_options) -> Gateway.

    Hosts an OrchestratorServicer over `backends` with start_host (host_options such as
    auth_token or max_concurrent_requests go to its ServerOptions), and serves the gateway in
    front of it. `orchestrator=` points the gateway elsewhere instead (no host is started).
    """
    with contextlib.ExitStack() as stack:

        def start(
            backends: Scripted | None = None,
            settings: GatewayConfig | None = None,
            orchestrator: str | None = None,
            wait: bool = True,
            servicer: OrchestratorServicer | None = None,
            **host_options: Any,
        ) -> Gateway:
            if orchestrator is None:
                if servicer is None:
                    backends = backends or Scripted()
                    servicer = backends.servicer()
                host = start_host([hosted_service(servicer)], **host_options)
                if wait:
                    host.wait_until_warm(30)
                    if backends is None or backends.warm_up_error is None:
                        wait_for_health(host.address, ORCHESTRATOR)
                orchestrator = host.address
            settings = replace(settings or GatewayConfig(request_timeout_s=30.0), orchestrator=orchestrator)
            url = stack.enter_context(serve_http(create_app(settings)))
            return Gateway(url, backends, orchestrator)

        yield start


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> Gateway:
    return start_gateway(Scripted())
