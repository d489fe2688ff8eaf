"""Every case of the bad-input corpus (tests/reliability/corpus.py) against every service, over gRPC
and through the RunPod shim, and a subset through the runpod SDK's local HTTP API.

Each run asserts the exact status code (RunPod: `error_code`) and a message substring, and that
the call left nothing behind: no new entry in the temp directory, no request to the loopback
HTTP server unless the case allow-lists it, no DNS query, no traceback text, no message longer
than MAX_MESSAGE_CHARS. The servers are in-process (one ServiceHost over the fixture models,
with the corpus's small limits); the RunPod path calls `run_job` over the same servicer objects.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from parakeet.runpod import response_to_json
from parakeet.v1 import diarization_pb2_grpc
from parakeet_server.core.audio import AudioLimits
from parakeet_server.core.batching import BatchPolicy
from parakeet_server.core.grpc_server import HostedService, ServerOptions, ServiceHost
from parakeet_server.core.runpod_shim import run_job
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
from tests.reliability import corpus, media
from tests.reliability.conftest import Loopback, ResolverGuard, scrubbed_env
from tests.reliability.corpus import CORPUS, MAX_MESSAGE_CHARS, Case, Outcome
from tests.support.audio import sweep, wav_bytes
from tests.support.servers import (
    REPO_ROOT,
    VENV_BIN,
    Spawned,
    free_port,
    start_process,
    stop_process,
    wait_for_health,
)

CALL_TIMEOUT_S = 280.0
LOCAL_FILE_SECONDS = 0.75


# -- servers and servicers ----------------------------------------------------------------------


@dataclass
class CorpusServers:
    """The three servicers (what the RunPod path calls) and the gRPC server hosting them."""

    methods: dict[str, Callable[..., Any]]
    address: str
    channel: grpc.Channel


@pytest.fixture(scope="module")
def servers(tdt_model_path: Path, pyannote_pipeline_path: Path) -> Iterator[CorpusServers]:
    engine = TranscriptionEngine(TranscriptionEngineConfig(model=str(tdt_model_path), device="cpu"))
    engine.load()
    runner = TranscriptionRunner(engine, BatchPolicy(max_batch_size=8, max_wait_ms=5.0))
    transcription = TranscriptionServicer(
        runner, AudioLimits(max_bytes=corpus.MAX_AUDIO_BYTES, max_duration_s=corpus.TRANSCRIPTION_MAX_SECONDS)
    )
    diarization_engine = PyannoteEngine(str(pyannote_pipeline_path), device="cpu")
    diarization_engine.load()
    diarization = DiarizationServicer(
        diarization_engine,
        AudioLimits(max_bytes=corpus.MAX_AUDIO_BYTES, max_duration_s=corpus.DIARIZATION_MAX_SECONDS),
    )
    orchestrator = OrchestratorServicer(
        InProcessBackends(transcription.Transcribe, diarization.Diarize, warm_up=lambda: None)
    )

    def register_diarization(server: grpc.Server) -> None:
        diarization_pb2_grpc.add_DiarizationServiceServicer_to_server(diarization, server)

    # As tests/conftest.py's start_host builds hosts, but once for the whole corpus.
    host = ServiceHost(
        [
            transcription_server.hosted_service(transcription),
            HostedService(diarization_server.SERVICE_NAME, register_diarization),
            orchestrator_server.hosted_service(orchestrator),
        ],
        ServerOptions(host="127.0.0.1", port=0, grace_s=1.0, max_message_bytes=corpus.MAX_MESSAGE_BYTES),
    )
    host.start()
    wait_for_health(host.address, timeout=120)
    channel = grpc.insecure_channel(
        host.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    yield CorpusServers(
        methods={
            "transcription": transcription.Transcribe,
            "diarization": diarization.Diarize,
            "orchestrator": orchestrator.Orchestrate,
        },
        address=host.address,
        channel=channel,
    )
    channel.close()
    host.drain(0.5)
    runner.close()


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """tempfile.gettempdir() for the services while the corpus runs: a directory nobody else uses,
    so that any entry appearing in it during a call was made by that call."""
    directory = tmp_path_factory.mktemp("service-tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(directory))
        patch.setenv("TMPDIR", str(directory))
        yield directory


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The services' working directory during a call, holding a WAV the ffconcat case names."""
    directory = tmp_path_factory.mktemp("cwd")
    (directory / media.LOCAL_FILE_NAME).write_bytes(wav_bytes(sweep(LOCAL_FILE_SECONDS, seed=11)))
    return directory


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Answer:
    """A service's answer on either path: a code, a message for errors, the response as JSON."""

    code: str
    message: str = ""
    response: dict[str, Any] | None = None


@dataclass
class Traces:
    """What a call left behind."""

    temp_entries: set[str]
    loopback_hits: list[str]
    names_resolved: list[str]


@contextlib.contextmanager
def watched(
    case: Case,
    monkeypatch: pytest.MonkeyPatch,
    private_tmp: Path,
    workdir: Path,
    loopback: Loopback,
    guard: ResolverGuard,
) -> Iterator[Traces]:
    """Run a call with the case's environment and record what it left behind."""
    monkeypatch.delenv("PARAKEET_FETCH_ALLOW", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(workdir)
    temp_before = set(os.listdir(private_tmp))
    hits_before = len(loopback.hits)
    names_before = len(guard.refused)
    traces = Traces(set(), [], [])
    yield traces
    traces.temp_entries = set(os.listdir(private_tmp)) - temp_before
    traces.loopback_hits = loopback.hits_since(hits_before)
    traces.names_resolved = guard.refused[names_before:]


def call_grpc(servers: CorpusServers, case: Case, service: str, base_url: str) -> Answer:
    call = servers.channel.unary_unary(corpus.METHODS[service])
    try:
        data = call(corpus.grpc_request(case, service, base_url), timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        return Answer(error.code().name, error.details() or "")
    response = corpus.RESPONSE_TYPES[service].FromString(data)
    return Answer("OK", response=response_to_json(response))


def call_runpod(servers: CorpusServers, case: Case, service: str, base_url: str) -> Answer:
    job = corpus.runpod_job(case, service, base_url)
    output = run_job(job, corpus.REQUEST_TYPES[service], servers.methods[service])
    if "error" in output:
        assert isinstance(output["error"], str)
        return Answer(output.get("error_code", "<no error_code: unhandled>"), output["error"])
    json.dumps(output)  # what RunPod sends back must be JSON
    return Answer("OK", response=output)


def assert_answer(answer: Answer, outcome: Outcome) -> None:
    if outcome.code == grpc.StatusCode.OK:
        assert answer.code == "OK", (
            f"expected success ({outcome.message}), got {answer.code}: {answer.message[:500]}"
        )
        assert answer.response is not None
        if outcome.check is not None:
            outcome.check(answer.response)
        return
    assert (answer.code, outcome.message in answer.message) == (outcome.code.name, True), (
        f"expected {outcome.code.name} with {outcome.message!r}, got {answer.code}: {answer.message[:500]!r}"
    )
    assert_presentable(answer.message)


def assert_presentable(message: str) -> None:
    assert message.strip(), "an error must say what to change"
    assert "Traceback" not in message and 'File "' not in message, message[:500]
    assert len(message) <= MAX_MESSAGE_CHARS, f"a {len(message)}-character error message: {message[:200]}..."


def assert_clean(case: Case, traces: Traces) -> None:
    assert traces.temp_entries == set(), f"left in the temp directory: {sorted(traces.temp_entries)}"
    assert traces.names_resolved == [], f"would have sent DNS queries for {traces.names_resolved}"
    if not case.fetches:
        assert traces.loopback_hits == [], f"the service fetched {traces.loopback_hits} from 127.0.0.1"


def corpus_params(transports: tuple[str, ...], services: tuple[str, ...]) -> list[Any]:
    params = []
    for case in CORPUS:
        for service in services:
            for transport in transports:
                outcome = case.outcome(service, transport)
                marks = [pytest.mark.xfail(strict=True, reason=outcome.bug)] if outcome.bug else []
                params.append(
                    pytest.param(
                        case, service, transport, id=f"{case.name}-{service}-{transport}", marks=marks
                    )
                )
    return params


@pytest.mark.parametrize(("case", "service", "transport"), corpus_params(corpus.TRANSPORTS, corpus.SERVICES))
def test_each_service_answers_the_corpus_case_as_the_table_says(
    case: Case,
    service: str,
    transport: str,
    servers: CorpusServers,
    http_worker: HttpWorker,
    monkeypatch: pytest.MonkeyPatch,
    private_tmp: Path,
    workdir: Path,
    loopback: Loopback,
    resolver_guard: ResolverGuard,
) -> None:
    call = call_grpc if transport == "grpc" else call_runpod
    with watched(case, monkeypatch, private_tmp, workdir, loopback, resolver_guard) as traces:
        answer = call(servers, case, service, loopback.url)
    assert_answer(answer, case.outcome(service, transport))
    assert_clean(case, traces)


# -- the runpod SDK's local HTTP API ---------------------------------------------------------


@dataclass
class HttpWorker:
    """`python -m parakeet_server.transcription.handler --rp_serve_api`, started early, waited for late."""

    process: Spawned
    port: int
    tmp: Path
    ready: bool = False

    def url(self) -> str:
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while not self.ready:
            assert self.process.poll() is None, self.process.output()[-3000:]
            assert time.monotonic() < deadline, (
                f"the worker did not come up:\n{self.process.output()[-3000:]}"
            )
            try:
                urllib.request.urlopen(f"{base}/docs", timeout=1.0).close()
                self.ready = True
            except OSError:
                time.sleep(0.3)
        return base

    def runsync(self, job_input: Any) -> dict[str, Any]:
        body = json.dumps({"input": job_input}).encode()
        request = urllib.request.Request(f"{self.url()}/runsync", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S) as response:
            reply: dict[str, Any] = json.loads(response.read())
        return reply


@pytest.fixture(scope="module")
def http_worker(tdt_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpWorker]:
    logs = tmp_path_factory.mktemp("http-worker")
    tmp = logs / "tmp"
    tmp.mkdir()
    port = free_port()
    command = [
        str(VENV_BIN / "python"),
        "-m",
        "parakeet_server.transcription.handler",
        "--rp_serve_api",
        "--rp_api_host",
        "127.0.0.1",
        "--rp_api_port",
        str(port),
    ]
    env = scrubbed_env(
        TRANSCRIPTION_MODEL=str(tdt_model_path),
        TRANSCRIPTION_DEVICE="cpu",
        MAX_AUDIO_SECONDS=str(corpus.TRANSCRIPTION_MAX_SECONDS),
        TMPDIR=str(tmp),
    )
    process = start_process(command, logs / "worker.log", env)
    yield HttpWorker(process, port, tmp)
    stop_process(process)


HTTP_CASES = [case for case in CORPUS if case.http_api]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=case.outcome("transcription", "runpod").bug)]
            if case.outcome("transcription", "runpod").bug
            else [],
        )
        for case in HTTP_CASES
    ],
)
def test_the_runpod_http_api_answers_the_case_as_run_job_does(
    case: Case, http_worker: HttpWorker, loopback: Loopback
) -> None:
    outcome = case.outcome("transcription", "runpod")
    http_worker.url()  # up, and done with start-up (torch leaves a temp dir behind once per process)
    temp_before = set(os.listdir(http_worker.tmp))
    hits_before = len(loopback.hits)
    reply = http_worker.runsync(corpus.materialise(case.job_for("transcription"), loopback.url))
    if outcome.code == grpc.StatusCode.OK:
        assert reply["status"] == "COMPLETED", reply
        if outcome.check is not None:
            outcome.check(reply["output"])
    else:
        assert reply["status"] == "FAILED", reply
        assert outcome.message in reply["error"], reply["error"][:500]
        assert_presentable(reply["error"])
    assert set(os.listdir(http_worker.tmp)) == temp_before
    assert loopback.hits_since(hits_before) == []


# -- after the corpus ---------------------------------------------------------------------------

GOOD_JOB = {"audio": base64.b64encode(media.good_wav()).decode(), "word_timestamps": True}


def test_every_service_still_answers_a_good_request_after_the_corpus(
    servers: CorpusServers, http_worker: HttpWorker
) -> None:
    for service in corpus.SERVICES:
        job = {**GOOD_JOB, "diarize": True} if service == "orchestrator" else dict(GOOD_JOB)
        if service == "diarization":
            job.pop("word_timestamps")
        case = Case("good", "a good request", job, corpus.ok("answers"))
        for call in (call_grpc, call_runpod):
            answer = call(servers, case, service, "http://127.0.0.1:9")
            assert answer.code == "OK", answer.message
            assert answer.response is not None and answer.response["duration"] == 1.0
        if service == "orchestrator":
            assert answer.response["num_speakers"] >= 1 and answer.response["words"]
    reply = http_worker.runsync(GOOD_JOB)
    assert reply["status"] == "COMPLETED" and reply["output"]["duration"] == 1.0, reply


# -- the table itself ---------------------------------------------------------------------------


def test_the_corpus_has_at_least_40_distinct_cases() -> None:
    names = [case.name for case in CORPUS]
    assert len(names) >= 40
    assert len(set(names)) == len(names)


def test_every_case_has_a_grpc_request_for_every_service(loopback: Loopback) -> None:
    for case in CORPUS:
        for service in corpus.SERVICES:
            assert isinstance(corpus.grpc_request(case, service, loopback.url), bytes), case.name


def test_docs_carry_the_corpus_table_as_generated() -> None:
    document = (REPO_ROOT / "docs" / "reliability.md").read_text()
    assert corpus.markdown() in document, "run `python -m tests.reliability.corpus` and paste its output"


@pytest.mark.parametrize("literal", ["127.0.0.1", "::1", "10.0.0.7", "2130706433", "localhost"])
def test_the_resolver_guard_resolves_non_public_literals(literal: str) -> None:
    assert ResolverGuard().getaddrinfo(literal, 9)


@pytest.mark.parametrize("host", ["example.com", "8.8.8.8", "2001:4860:4860::8888"])
def test_the_resolver_guard_refuses_names_and_public_addresses_without_a_query(host: str) -> None:
    guard = ResolverGuard()
    with pytest.raises(OSError):
        guard.getaddrinfo(host, 80)
    assert guard.refused == [host]
