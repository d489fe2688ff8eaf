"""RunPod streaming without models: the client's /stream polling against a scripted RunPod API
(partials arriving over several polls, a job that fails after some finals), a streaming
worker's aggregated /runsync output read as its last item, and which handler the workers give
the SDK (a generator only with RUNPOD_STREAM, so other workers answer as before)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from parakeet import orchestrate_request
from parakeet.errors import InvalidArgument, Unavailable
from parakeet.runpod import JobResult, RunPodJobs, response_to_json
from parakeet.v1 import audio_pb2, orchestrator_pb2, streaming_pb2
from parakeet_server.core import runpod_shim
from parakeet_server.core.errors import PreconditionFailed
from parakeet_server.orchestrator import handler
from parakeet_server.orchestrator.config import OrchestratorConfig
from tests.client.test_runpod import runpod  # noqa: F401  (the scripted RunPod API fixture)

FINAL = streaming_pb2.FinalResult(
    text="hello there",
    start=0.5,
    end=1.25,
    speaker="SPEAKER_00",
    words=[audio_pb2.Word(word="hello", start=0.5, end=0.8, speaker="SPEAKER_00")],
)
WHOLE = orchestrator_pb2.OrchestrateResponse(
    text="hello there", num_speakers=1, duration=2.0, response_format=audio_pb2.RESPONSE_FORMAT_JSON
)


def partial(kind: str, message: Any) -> dict[str, Any]:
    return {"output": {"type": kind, **response_to_json(message)}}


def test_stream_yields_each_partial_as_polls_bring_it(runpod) -> None:  # noqa: F811
    scripted, endpoint = runpod
    second = streaming_pb2.FinalResult(text="bye", start=1.5, end=1.9, speaker="SPEAKER_01")
    scripted.replies += [
        (200, {"id": "job-7", "status": "IN_QUEUE"}),
        (200, {"id": "job-7", "status": "IN_PROGRESS", "stream": [partial("final", FINAL)]}),
        (200, {"id": "job-7", "status": "IN_PROGRESS", "stream": []}),
        (
            200,
            {
                "id": "job-7",
                "status": "COMPLETED",
                "stream": [partial("final", second), partial("response", WHOLE)],
            },
        ),
    ]
    jobs = RunPodJobs("key-1", poll_interval_s=0.01)
    request = orchestrate_request("https://example.com/a.mp3", diarize=True)
    received = jobs.stream(endpoint, request, orchestrator_pb2.OrchestrateResponse, timeout=10)
    assert next(received) == FINAL
    assert len(scripted.seen) == 2  # the first final came before the job ended
    assert list(received) == [second, WHOLE]
    assert [(method, path) for method, path, _body, _auth in scripted.seen] == [
        ("POST", "/v2/endpoint/run"),
        ("GET", "/v2/endpoint/stream/job-7"),
        ("GET", "/v2/endpoint/stream/job-7"),
        ("GET", "/v2/endpoint/stream/job-7"),
    ]
    assert scripted.seen[0][2]["input"]["audio"] == "https://example.com/a.mp3"
    assert scripted.seen[0][2]["input"]["diarize"] is True


def test_a_job_that_fails_after_some_finals_raises_after_them(runpod) -> None:  # noqa: F811
    scripted, endpoint = runpod
    scripted.replies += [
        (200, {"id": "job-8", "status": "IN_PROGRESS"}),
        (200, {"id": "job-8", "status": "IN_PROGRESS", "stream": [partial("final", FINAL)]}),
        # RunPod ends a generator job FAILED with the message only when a partial holds "error".
        (200, {"id": "job-8", "status": "FAILED", "error": "live diarization failed"}),
    ]
    received = RunPodJobs("k", poll_interval_s=0.01).stream(
        endpoint, orchestrate_request(b"RIFF"), orchestrator_pb2.OrchestrateResponse, timeout=10
    )
    assert next(received) == FINAL
    with pytest.raises(Unavailable, match="live diarization failed") as raised:
        next(received)
    assert raised.value.reason == "UNAVAILABLE"


def test_an_error_partial_keeps_its_code_and_reason(runpod) -> None:  # noqa: F811
    scripted, endpoint = runpod
    error = {"type": "error", "error": "could not decode", "error_code": "INVALID_ARGUMENT"}
    scripted.replies += [
        (200, {"id": "job-9", "status": "IN_PROGRESS"}),
        (
            200,
            {
                "id": "job-9",
                "status": "COMPLETED",
                "stream": [{"output": {**error, "reason": "AUDIO_UNDECODABLE"}}],
            },
        ),
    ]
    with pytest.raises(InvalidArgument, match="could not decode") as raised:
        list(
            RunPodJobs("k", poll_interval_s=0.01).stream(
                endpoint, orchestrate_request(b"RIFF"), orchestrator_pb2.OrchestrateResponse, timeout=10
            )
        )
    assert raised.value.reason == "AUDIO_UNDECODABLE"


def test_a_plain_worker_on_stream_is_named_as_such(runpod) -> None:  # noqa: F811
    scripted, endpoint = runpod
    scripted.replies += [
        (200, {"id": "job-1", "status": "IN_PROGRESS"}),
        (200, {"id": "job-1", "status": "COMPLETED", "stream": []}),
    ]
    with pytest.raises(Unavailable, match="RUNPOD_STREAM=1"):
        list(
            RunPodJobs("k", poll_interval_s=0.01).stream(
                endpoint, orchestrate_request(b"RIFF"), orchestrator_pb2.OrchestrateResponse, timeout=10
            )
        )


def test_a_streaming_workers_runsync_output_reads_as_its_last_partial() -> None:
    partials = [partial("final", FINAL)["output"], partial("response", WHOLE)["output"]]
    result = JobResult.from_reply({"id": "j", "status": "COMPLETED", "output": partials})
    assert result.completed and result.output == response_to_json(WHOLE)
    failed = JobResult.from_reply(
        {
            "id": "j",
            "status": "COMPLETED",
            "output": [
                partials[0],
                {
                    "type": "error",
                    "error": "too long",
                    "error_code": "RESOURCE_EXHAUSTED",
                    "reason": "DURATION_LIMIT",
                },
            ],
        }
    )
    assert (failed.status, failed.error, failed.error_code, failed.reason) == (
        "FAILED",
        "too long",
        "RESOURCE_EXHAUSTED",
        "DURATION_LIMIT",
    )
    cut = JobResult.from_reply({"id": "j", "status": "COMPLETED", "output": partials[:1]})
    assert not cut.completed and "without its response" in cut.error
    assert cut.worker_error().reason == "UNAVAILABLE"


def _handler_given_to_the_sdk(monkeypatch: pytest.MonkeyPatch, serve: Any, servicer: Any) -> dict[str, Any]:
    import runpod as sdk

    started: dict[str, Any] = {}
    monkeypatch.setattr(sdk.serverless, "start", started.update)
    monkeypatch.setattr(runpod_shim.signal, "signal", lambda *_args: None)
    serve(orchestrator_pb2.OrchestrateRequest, servicer)
    return started


def test_only_a_streaming_worker_hands_the_sdk_a_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _handler_given_to_the_sdk(monkeypatch, runpod_shim.serve_jobs, lambda request, context: WHOLE)
    assert set(plain) == {"handler"} and not inspect.isgeneratorfunction(plain["handler"])
    assert plain["handler"]({"id": "1", "input": {"audio": "https://example.com/a.wav"}}) == response_to_json(
        WHOLE
    )

    def stream(request: Any, warnings: list[str]) -> Any:
        yield {"type": "final", **response_to_json(FINAL)}
        yield {"type": "response", **runpod_shim.output_with_warnings(WHOLE, warnings)}

    streaming = _handler_given_to_the_sdk(monkeypatch, runpod_shim.serve_stream_jobs, stream)
    assert streaming["return_aggregate_stream"] is True
    assert inspect.isgeneratorfunction(streaming["handler"])
    out = list(
        streaming["handler"]({"id": "2", "input": {"audio": "https://example.com/a.wav", "temperature": 0}})
    )
    assert [item["type"] for item in out] == ["final", "response"]
    assert out[1]["warnings"][0].startswith("'temperature' is ignored")
    bad = list(streaming["handler"]({"id": "3", "input": {"audio": "https://x/a.wav", "colour": "red"}}))
    assert bad == [
        {
            "type": "error",
            "error": bad[0]["error"],
            "error_code": "INVALID_ARGUMENT",
            "reason": "UNKNOWN_FIELD",
        }
    ]
    assert 'no field named "colour"' in bad[0]["error"]


@pytest.mark.parametrize(
    ("value", "streams"), [(None, False), ("", False), ("0", False), ("1", True), ("on", True)]
)
def test_runpod_stream_picks_the_worker_kind(
    monkeypatch: pytest.MonkeyPatch, value: str | None, streams: bool
) -> None:
    chosen: list[str] = []
    # The plain worker runs the orchestrate and enroll tasks; the streaming one streams orchestrate.
    monkeypatch.setattr(handler, "run_tasks_worker", lambda *_args: chosen.append("plain"))
    monkeypatch.setattr(handler, "run_stream_worker", lambda *_args: chosen.append("stream"))
    if value is None:
        monkeypatch.delenv("RUNPOD_STREAM", raising=False)
    else:
        monkeypatch.setenv("RUNPOD_STREAM", value)
    handler.main()
    assert chosen == ["stream" if streams else "plain"]


def test_a_bad_runpod_stream_value_is_every_jobs_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    prepared: list[Any] = []
    monkeypatch.setattr(handler, "run_worker", lambda _type, prepare: prepared.append(prepare))
    monkeypatch.setenv("RUNPOD_STREAM", "maybe")
    handler.main()
    answer = runpod_shim.run_job(
        {"input": {"audio": "https://example.com/a.wav"}},
        orchestrator_pb2.OrchestrateRequest,
        runpod_shim.ready_or_refusing(prepared[0]),
    )
    assert answer["error_code"] == "FAILED_PRECONDITION"
    assert "RUNPOD_STREAM='maybe'" in answer["error"]


def test_streaming_over_runpod_backends_is_refused_with_what_to_set() -> None:
    with pytest.raises(PreconditionFailed, match="ORCHESTRATOR_BACKEND=inprocess"):
        handler.prepare_stream(OrchestratorConfig(backend="runpod"))
    stream = runpod_shim.streaming_or_refusing(
        lambda: handler.prepare_stream(OrchestratorConfig(backend="runpod"))
    )
    out = list(
        runpod_shim.stream_job(
            {"input": {"audio": "https://x/a.wav"}}, orchestrator_pb2.OrchestrateRequest, stream
        )
    )
    assert len(out) == 1 and out[0]["type"] == "error" and out[0]["error_code"] == "FAILED_PRECONDITION"
