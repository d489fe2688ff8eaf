"""`parakeet batch --runpod`: the client's queued RunPod jobs (/run + /status) with retries on
429/5xx (Retry-After honoured), a worker's retryable failure submitted again, a job cancelled at
its deadline, the payload limit; and the batch backend over a RunPod API that rate-limits and
fails now and then, and over the SDK's local test API with the real worker (tiny TDT + offline
diarizer): outputs identical to the embedded backend's."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from parakeet import orchestrate_request
from parakeet.batch import RESULTS, BatchItem, Outputs, ResultsLog, expand, run
from parakeet.batch.runpod import transcriber
from parakeet.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from parakeet.runpod import RUNPOD_MAX_PAYLOAD_BYTES, Retry, RunPodEndpoint, RunPodJobs, response_to_json
from parakeet.v1 import audio_pb2, orchestrator_pb2
from tests.support.batch_corpus import CORRUPT, BatchCorpus
from tests.support.servers import VENV_BIN, free_port, start_process, stop_process, wait_for_worker

ANSWER = orchestrator_pb2.OrchestrateResponse(
    text="hello there", num_speakers=1, duration=1.5, response_format=audio_pb2.RESPONSE_FORMAT_JSON
)
FAST = Retry(attempts=4, backoff_s=0.01, max_backoff_s=0.05)

# What the fake API answers: (HTTP status, headers, JSON body); None = the normal answer.
Reply = tuple[int, dict[str, str], Any]


@dataclass
class FakeRunPod:
    """RunPod's queue API (/run, /status/ID, /cancel/ID, also /runsync) on a loopback port.

    A job's output is `answer(job input)` -> (status, output); it is IN_QUEUE on its first poll.
    `inject(route, n)` may replace the n-th request (1-based) to `route` with another reply."""

    answer: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
    inject: Callable[[str, int], Reply | None] = lambda _route, _n: None
    base: str = ""
    seen: list[tuple[float, str, str]] = field(default_factory=list)  # (time, route, job id)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Iterator[int] = field(default_factory=itertools.count)

    def handle(self, method: str, path: str, body: Any) -> Reply:
        route, _, job_id = path.removeprefix("/v2/ep/").partition("/")
        with self.lock:
            self.seen.append((time.monotonic(), route, job_id))
            self.counts[route] = self.counts.get(route, 0) + 1
            injected = self.inject(route, self.counts[route])
            if injected is not None:
                return injected
            if route in ("run", "runsync"):
                job_id = f"job-{next(self.ids)}"
                self.inputs[job_id] = body["input"]
                if route == "run":
                    return 200, {}, {"id": job_id, "status": "IN_QUEUE"}
            elif route == "cancel":
                return 200, {}, {"id": job_id, "status": "CANCELLED"}
            elif job_id not in self.inputs:
                return 404, {}, {"error": "no such job"}
            self.polls[job_id] = self.polls.get(job_id, 0) + 1
            if route == "status" and self.polls[job_id] == 1:
                return 200, {}, {"id": job_id, "status": "IN_QUEUE"}
        status, output = self.answer(self.inputs[job_id])
        reply = {"id": job_id, "status": status, "output": output}
        if status == "FAILED":
            reply["error"] = output.get("error", "failed")
        return 200, {}, reply


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeRunPod]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(answer: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]], **kwargs: Any) -> FakeRunPod:
        api = FakeRunPod(answer, **kwargs)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, body: Any) -> None:
                status, headers, reply = api.handle(self.command, self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self._reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def do_GET(self) -> None:
                self._reply(None)

            def log_message(self, *_args: object) -> None:
                """Quiet."""

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        api.base = f"http://127.0.0.1:{server.server_address[1]}/v2/ep"
        return api

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _ok(_input: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "COMPLETED", response_to_json(ANSWER)


def _call(api: FakeRunPod, retry: Retry = FAST, timeout: float = 10.0, **kwargs: Any) -> Any:
    jobs = RunPodJobs("key", poll_interval_s=0.01, retry=retry)
    request = orchestrate_request("https://example.com/a.mp3", diarize=True)
    return jobs.call(
        RunPodEndpoint("ep", api.base),
        request,
        orchestrator_pb2.OrchestrateResponse,
        timeout,
        queued=True,
        **kwargs,
    )


def _routes(api: FakeRunPod) -> list[str]:
    return [route for _at, route, _id in api.seen]


def test_a_queued_job_is_posted_to_run_and_polled_on_status(fake) -> None:
    api = fake(_ok)
    assert _call(api, retry=Retry()) == ANSWER
    assert _routes(api) == ["run", "status", "status"]
    assert api.inputs == {
        "job-0": {"audio": "https://example.com/a.mp3", "diarize": True, "response_format": "json"}
    }


def test_429_and_503_are_retried_and_retry_after_is_waited(fake) -> None:
    def inject(route: str, n: int) -> Reply | None:
        if route == "run" and n == 1:
            return 429, {"Retry-After": "0.4"}, {"error": "rate limited"}
        if route == "status" and n == 2:
            return 503, {}, {"error": "upstream trouble"}
        return None

    api = fake(_ok, inject=inject)
    assert _call(api) == ANSWER
    assert _routes(api) == ["run", "run", "status", "status", "status"]
    (first, *_), (second, *_) = api.seen[:2]
    assert second - first >= 0.4, "the second /run waited what Retry-After asked"
    assert len(api.inputs) == 1, "one job queued: the refused /run queued nothing"


def test_retries_give_up_with_the_reason_and_how_often_they_tried(fake) -> None:
    api = fake(_ok, inject=lambda route, n: (503, {}, {"error": "down"}))
    with pytest.raises(Unavailable) as raised:
        _call(api)
    assert raised.value.reason == "BACKEND_UNAVAILABLE" and raised.value.retryable
    assert raised.value.details.startswith("the RunPod endpoint is unavailable: HTTP 503 from http://")
    assert raised.value.details.endswith("(tried 4 times)")
    assert _routes(api) == ["run"] * 4


def test_a_retry_after_beyond_the_deadline_is_not_waited(fake) -> None:
    api = fake(_ok, inject=lambda route, n: (429, {"Retry-After": "120"}, {"error": "slow down"}))
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"HTTP 429 from .* \(rate limited\)$"):
        _call(api, timeout=5.0)
    assert time.monotonic() - started < 2.0 and _routes(api) == ["run"]


@pytest.mark.parametrize(
    ("status", "error_type", "reason"),
    [
        (401, FailedPrecondition, "BACKEND_CREDENTIALS"),
        (413, ResourceExhausted, "PAYLOAD_TOO_LARGE"),
        (400, Unavailable, "BACKEND_UNAVAILABLE"),
    ],
)
def test_refusals_that_would_be_refused_again_are_not_retried(fake, status, error_type, reason) -> None:
    api = fake(_ok, inject=lambda route, n: (status, {}, {"error": "no"}))
    with pytest.raises(error_type) as raised:
        _call(api)
    assert raised.value.reason == reason and _routes(api) == ["run"]


def test_a_worker_failure_with_a_retryable_reason_is_submitted_again(fake) -> None:
    answers = iter(
        [
            (
                "FAILED",
                {"error": "the model is loading", "error_code": "UNAVAILABLE", "reason": "WARMING_UP"},
            ),
            ("COMPLETED", response_to_json(ANSWER)),
        ]
    )
    api = fake(lambda _input: next(answers))
    assert _call(api) == ANSWER
    assert _routes(api) == ["run", "status", "status", "run", "status", "status"]


@pytest.mark.parametrize(
    "output",
    [
        {
            "error": "could not decode the audio",
            "error_code": "INVALID_ARGUMENT",
            "reason": "AUDIO_UNDECODABLE",
        },
        {"error": "worker exited"},  # no reason: it may have crashed its worker, and would again
    ],
)
def test_a_worker_failure_that_would_fail_again_is_not_resubmitted(fake, output) -> None:
    api = fake(lambda _input: ("FAILED", dict(output)))
    with pytest.raises((InvalidArgument, Unavailable)) as raised:
        _call(api)
    assert raised.value.details == output["error"] and raised.value.request_id == "job-0"
    assert raised.value.reason == output.get("reason", "UNAVAILABLE")
    assert _routes(api).count("run") == 1


def test_a_job_still_running_at_the_deadline_is_cancelled(fake) -> None:
    api = fake(lambda _input: ("IN_PROGRESS", {}))
    # Which side of a poll the deadline falls on depends on the machine's load: both say so.
    with pytest.raises(
        DeadlineExceeded, match=r"^the deadline passed while (job job-0 on|waiting for) the RunPod"
    ):
        _call(api, timeout=0.5)
    assert _routes(api)[0] == "run" and _routes(api)[-1] == "cancel"
    assert api.seen[-1][2] == "job-0"


def test_without_a_retry_policy_a_503_fails_at_once_as_before(fake) -> None:
    api = fake(_ok, inject=lambda route, n: (503, {}, {"error": "down"}))
    with pytest.raises(Unavailable) as raised:
        RunPodJobs("key").call(
            RunPodEndpoint("ep", api.base), orchestrate_request(b"x"), orchestrator_pb2.OrchestrateResponse
        )
    assert not raised.value.details.endswith("times)") and _routes(api) == ["runsync"]


def test_retry_backoff_grows_and_is_capped() -> None:
    retry = Retry(attempts=10, backoff_s=1.0, max_backoff_s=8.0)
    assert retry.delay(3, 2.5) == 2.5
    assert 0.5 <= retry.delay(1, None) <= 1.0
    assert 2.0 <= retry.delay(3, None) <= 4.0
    assert 4.0 <= retry.delay(9, None) <= 8.0


# -- the batch backend ----------------------------------------------------------------------


def test_a_local_file_over_runpods_limit_is_refused_before_it_is_sent(fake, monkeypatch) -> None:
    api = fake(_ok)
    transcribe = transcriber("ep", "key", url=api.base, retry=FAST)
    request = orchestrate_request(bytes(RUNPOD_MAX_PAYLOAD_BYTES * 3 // 4))
    with pytest.raises(ResourceExhausted) as raised:
        transcribe(request)
    assert raised.value.reason == "PAYLOAD_TOO_LARGE" and not raised.value.retryable
    assert raised.value.details.startswith("the file is 7.9 MB, 10.5 MB as a RunPod job's base64 JSON")
    assert "list that in a manifest (`url` column)" in raised.value.details
    assert api.seen == []
    # A URL goes as audio.uri, whatever the file behind it weighs.
    assert transcribe(orchestrate_request("https://example.com/huge.flac")) == ANSWER
    assert api.inputs["job-0"]["audio"] == "https://example.com/huge.flac"


def test_the_endpoint_and_key_come_from_the_arguments_or_the_environment(fake, monkeypatch) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.delenv("RUNPOD_ENDPOINT_URL", raising=False)
    with pytest.raises(
        FailedPrecondition, match=r"^--runpod needs the RunPod API key: export RUNPOD_API_KEY="
    ) as raised:
        transcriber("abc123")
    assert raised.value.reason == "BACKEND_CREDENTIALS"
    api = fake(_ok)
    # A base URL in place of the id (a proxy, a worker's local test API) needs no key.
    assert transcriber(api.base, retry=FAST)(orchestrate_request("https://example.com/a.wav")) == ANSWER
    monkeypatch.setenv("RUNPOD_ENDPOINT_URL", api.base)
    monkeypatch.setenv("RUNPOD_API_KEY", "from-env")
    assert transcriber("abc123", retry=FAST)(orchestrate_request("https://example.com/b.wav")) == ANSWER
    assert sorted(job["audio"] for job in api.inputs.values()) == [
        "https://example.com/a.wav",
        "https://example.com/b.wav",
    ]


ENGINES = {
    "ORCHESTRATOR_BACKEND": "inprocess",
    "TRANSCRIPTION_DEVICE": "cpu",
    "DIARIZATION_PIPELINE": "offline",
    "DIARIZATION_DEVICE": "cpu",
}
FORMATS = ("json", "srt", "vtt", "text", "rttm")


def _files(root: Path) -> dict[str, bytes]:
    """Every output under `root` but the results log (its timings differ run to run)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != RESULTS
    }


@pytest.fixture(scope="module")
def embedded_run(batch_corpus: BatchCorpus, tiny_tdt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded backend's outputs for the files these tests send to RunPod: the reference."""
    from parakeet_server.embedded import orchestrator

    out = tmp_path_factory.mktemp("embedded")
    transcribe = orchestrator(model=str(tiny_tdt), pipeline="offline", diarize=True, concurrency=1)
    summary = run(
        _items(batch_corpus),
        transcribe,
        Outputs(out, FORMATS),
        ResultsLog(out / RESULTS),
        defaults={"diarize": True},
        concurrency=1,
        progress=False,
    )
    assert (summary.done, summary.failed) == (GOOD, len(CORRUPT))
    return out


GOOD = 97  # the whole corpus: 100 files, 3 of them corrupt


def _items(corpus: BatchCorpus) -> list[BatchItem]:
    return expand([str(path) for path in corpus.paths(corpus.subset(GOOD))])


def _reasons(out: Path) -> dict[str, tuple[str, str]]:
    """source (relative to the corpus) -> (status, reason) from results.jsonl."""
    return {
        Path(row.source).parent.name + "/" + Path(row.source).name: (row.status, row.reason)
        for row in ResultsLog(out / RESULTS).rows().values()
    }


@pytest.mark.slow
@pytest.mark.espeak
def test_a_batch_through_a_flaky_runpod_queue_gives_the_embedded_outputs(
    batch_corpus: BatchCorpus, tiny_tdt: Path, embedded_run: Path, fake, tmp_path: Path
) -> None:
    """The RunPod API rate-limits every third /run (Retry-After) and fails every fourth /status
    (503); the jobs run the worker's own code (run_job over the orchestrator) on the real models."""
    from parakeet_server.core.runpod_shim import run_job
    from parakeet_server.orchestrator.config import OrchestratorConfig
    from parakeet_server.orchestrator.handler import prepare

    servicer = prepare(OrchestratorConfig.from_env({**ENGINES, "TRANSCRIPTION_MODEL": str(tiny_tdt)}))

    one_at_a_time = threading.Lock()  # a RunPod worker runs one job at a time

    def worker(job_input: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        with one_at_a_time:
            output = run_job({"id": "w", "input": job_input}, orchestrator_pb2.OrchestrateRequest, servicer)
        return ("FAILED" if "error" in output else "COMPLETED"), output

    def inject(route: str, n: int) -> Reply | None:
        if route == "run" and n % 3 == 0:
            return 429, {"Retry-After": "0.05"}, {"error": "too many requests"}
        if route == "status" and n % 4 == 0:
            return 503, {}, {"error": "try again"}
        return None

    api = fake(worker, inject=inject)
    items = _items(batch_corpus)
    transcribe = transcriber("ep", "key", url=api.base, poll_interval_s=0.02, retry=FAST)
    summary = run(
        items,
        transcribe,
        Outputs(tmp_path, FORMATS),
        ResultsLog(tmp_path / RESULTS),
        defaults={"diarize": True},
        concurrency=4,
        progress=False,
    )
    assert (summary.done, summary.failed, summary.exit_status) == (GOOD, len(CORRUPT), 1)
    assert _files(tmp_path) == _files(embedded_run)
    assert len(_files(tmp_path)) == GOOD * len(FORMATS)
    assert _reasons(tmp_path) == _reasons(embedded_run)
    assert {source: reason for source, (_status, reason) in _reasons(tmp_path).items() if reason} == CORRUPT
    # Rate limits (every third /run) and 503s were met and ridden out; each input queued exactly once.
    runs = api.counts["run"]
    assert runs >= 3 and api.counts["status"] >= 4
    assert runs - runs // 3 == len(api.inputs) == len(items)


@pytest.fixture(scope="module")
def local_worker(tiny_tdt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The orchestrator worker as RunPod runs it, behind the runpod SDK's local test API."""
    port = free_port()
    command = [
        str(VENV_BIN / "python"),
        "-m",
        "parakeet_server.orchestrator.handler",
        "--rp_serve_api",
        "--rp_api_host",
        "127.0.0.1",
        "--rp_api_port",
        str(port),
    ]
    log = tmp_path_factory.mktemp("runpod-worker") / "worker.log"
    process = start_process(
        command, log, {**ENGINES, "TRANSCRIPTION_MODEL": str(tiny_tdt), "RUNPOD_STREAM": ""}
    )
    try:
        yield wait_for_worker(port, process, timeout=300)
    finally:
        stop_process(process)


@pytest.mark.slow
@pytest.mark.espeak
def test_parakeet_batch_on_the_sdks_local_test_api_gives_the_embedded_outputs(
    batch_corpus: BatchCorpus, embedded_run: Path, local_worker: str, tmp_path: Path
) -> None:
    """/run + /status on the real worker process; the local API reads /status with POST only
    (the client falls back to it) and drops a failed job's output, so a corrupt file's row keeps
    the worker's message but not its reason (UNAVAILABLE; RunPod's own API keeps both)."""
    transcribe = transcriber(local_worker, poll_interval_s=0.05, retry=FAST)
    summary = run(
        _items(batch_corpus),
        transcribe,
        Outputs(tmp_path, FORMATS),
        ResultsLog(tmp_path / RESULTS),
        defaults={"diarize": True},
        concurrency=3,
        progress=False,
    )
    assert (summary.done, summary.failed, summary.exit_status) == (GOOD, len(CORRUPT), 1)
    assert _files(tmp_path) == _files(embedded_run)
    here, there = ResultsLog(tmp_path / RESULTS).rows(), ResultsLog(embedded_run / RESULTS).rows()
    failed = {key for key, row in there.items() if row.status == "failed"}
    assert {key for key, row in here.items() if row.status == "failed"} == failed
    for key in failed:
        # The empty file is refused by the worker's job JSON before decoding, in its own words.
        empty = there[key].reason == "AUDIO_MISSING"
        expected = (
            "'audio' is empty; send an http(s) URL or base64-encoded audio" if empty else there[key].error
        )
        assert (here[key].reason, here[key].error) == ("UNAVAILABLE", expected)
