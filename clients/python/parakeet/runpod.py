"""The RunPod job client: the job JSON of the parakeet RunPod workers, and /runsync + /status over HTTP.

A RunPod worker of this service takes `{"input": {...}}` with the request's fields in snake_case
(`audio` a bare URL or base64 string, `audio_format` beside it, `response_format` a short name
such as "srt") and answers the response the same way (`response_to_json`), or `{"error",
"error_code", "reason"}` with the gRPC code and `parakeet.errors` reason the gRPC server would
send. `RunPodJobs.call` sends one request message and hands back the response message;
`RunPodJobs.submit` is the step below it for callers that map a failed job themselves (the
orchestrator's RunPod backend names the backend in its errors).

An enroll job is `{"task": "enroll", "audio": ..., "name": "Alice"}` on a worker that hosts a
diarization engine; its output is the voiceprint file `parakeet enroll` writes
(`enrolled_to_json`), which `RunPodJobs.enroll` reads back as an EnrollResponse.

A streaming worker (RUNPOD_STREAM=1) answers the same input with partial results:
`RunPodJobs.stream` posts the job to /run and reads /stream/{job_id} until the job ends, yielding
each `{"type": "final", ...}` partial as a FinalResult and the last `{"type": "response", ...}` as
the response message. Its /runsync output is the list of those partials, which `JobResult` reads
as the last item's response, so `call` works against either kind of worker.

A batch of many jobs (`parakeet batch --runpod`) goes through RunPod's queue instead:
`RunPodJobs.call(..., queued=True)` posts to /run and polls /status/{job_id}, and a `Retry` policy
sends again what RunPod may answer differently a moment later (HTTP 429 and 5xx, an unreachable
API, a job the worker failed with a retryable reason), waiting as long as a Retry-After header
asks, else an exponential backoff with jitter. The default policy tries once, as before.

Only the standard library talks HTTP, so the client needs nothing beyond grpcio and protobuf.
The workers themselves (`parakeet_server.core.runpod_shim`) import the JSON mapping from here,
so both sides read and write one format.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from parakeet.errors import (
    REASONS,
    DeadlineExceeded,
    FailedPrecondition,
    ParakeetError,
    ResourceExhausted,
    Unavailable,
)
from parakeet.formats import lookup, name_of
from parakeet.v1 import audio_pb2, diarization_pb2, streaming_pb2

ResponseT = TypeVar("ResponseT", bound=Message)

RUNPOD_API_BASE = "https://api.runpod.ai/v2"
# RunPod rejects larger request bodies (/runsync accepts 20 MB, /run 10 MB); base64 grows bytes by 4/3.
RUNPOD_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# The job statuses after which /status will not change any more.
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
API_KEY_ENV = "RUNPOD_API_KEY"
# An enroll job: the input's `task` field names it (a job without one runs the endpoint's own request).
ENROLL_TASK_FIELD, ENROLL_TASK = "task", "enroll"
# HTTP statuses after which the same request may be answered: rate limited, or the API is having trouble.
RETRY_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Retry:
    """How often to send again what RunPod may answer differently a moment later.

    `attempts` counts the tries of one HTTP request (and of one job the worker failed with a
    retryable reason, e.g. WARMING_UP); 1 never retries. The wait before try n+1 is the reply's
    Retry-After when it has one, else `backoff_s * 2**(n-1)` capped at `max_backoff_s`, of which
    a random half is waited (jitter, so many threads do not retry in step); the job's deadline
    bounds every wait."""

    attempts: int = 1
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


NO_RETRY = Retry(attempts=1)


@dataclass(frozen=True)
class RunPodEndpoint:
    """One serverless endpoint: its id, and the base URL its /runsync and /status live under."""

    endpoint_id: str
    url: str = ""

    @property
    def base_url(self) -> str:
        return (self.url or f"{RUNPOD_API_BASE}/{self.endpoint_id}").rstrip("/")


# -- the job JSON ----------------------------------------------------------------------------


def request_to_json(request: Message) -> dict[str, Any]:
    """A request as the job input existing clients send (the inverse of the workers' `parse_job`).

    The audio goes as a bare string (the URL, or base64 of the bytes) with `audio_format`
    beside it, so any RunPod worker of this service, old or new, reads it.
    """
    document = json_format.MessageToDict(request, preserving_proto_field_name=True)
    audio = document.pop("audio", None)
    if audio is not None:
        document["audio"] = audio.get("uri") or audio.get("content", "")
        if audio.get("format"):
            document["audio_format"] = audio["format"]
    if "response_format" in document:
        document["response_format"] = name_of(request.response_format)  # type: ignore[attr-defined]
    return document


def response_to_json(response: Message) -> dict[str, Any]:
    """The response as existing JSON clients read it: snake_case names, zeros printed, short enums."""
    document = json_format.MessageToDict(
        response,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    if "response_format" in document:
        document["response_format"] = name_of(response.response_format)  # type: ignore[attr-defined]
    return document


def response_from_json(output: Mapping[str, Any], response_type: type[ResponseT]) -> ResponseT:
    """A worker's JSON output as a response message (the inverse of `response_to_json`).

    Fields this client does not know (from a newer worker) are skipped; a value of the wrong
    type raises `json_format.ParseError`, an unknown format name ValueError."""
    fields = dict(output)
    fields.pop("error_code", None)
    fields.pop("reason", None)
    if "response_format" in fields:
        row = lookup(fields["response_format"])
        if row is None:
            raise ValueError(f"unknown response_format {fields['response_format']!r} in the worker's output")
        fields["response_format"] = int(row.value)
    return json_format.ParseDict(fields, response_type(), ignore_unknown_fields=True)


def enrolled_to_json(enrolled: diarization_pb2.EnrollResponse) -> dict[str, Any]:
    """An enroll job's output: the voiceprint file `parakeet enroll` writes (`write_voiceprint`), a
    KnownSpeaker in protobuf JSON, so it can be saved as NAME.voiceprint.json or put straight
    into a later job's `known_speakers`."""
    speaker = audio_pb2.KnownSpeaker(name=enrolled.name, voiceprint=enrolled.voiceprint)
    return json_format.MessageToDict(speaker)


def enrolled_from_json(output: Mapping[str, Any]) -> diarization_pb2.EnrollResponse:
    """An enroll job's output (`enrolled_to_json`) as the EnrollResponse it was made from (its
    name and voiceprint; the audio's duration and the engine are not in the file)."""
    speaker = json_format.ParseDict(dict(output), audio_pb2.KnownSpeaker(), ignore_unknown_fields=True)
    if speaker.WhichOneof("voice") != "voiceprint" or not speaker.voiceprint.embedding:
        raise ValueError("the enroll job's output holds no voiceprint")
    return diarization_pb2.EnrollResponse(
        name=speaker.name, voiceprint=speaker.voiceprint, model=speaker.voiceprint.model
    )


def final_from_json(partial: Mapping[str, Any]) -> streaming_pb2.FinalResult:
    """A streaming worker's `{"type": "final", ...}` partial as the FinalResult it was made from."""
    fields = {key: value for key, value in partial.items() if key != "type"}
    return json_format.ParseDict(fields, streaming_pb2.FinalResult(), ignore_unknown_fields=True)


def _last_partial(partials: Sequence[Any]) -> dict[str, Any]:
    """A streaming worker's aggregated output (/runsync: every partial) as one job output: the
    whole response, or the error it ended with, or an error saying the response is missing."""
    last = partials[-1] if partials else None
    if not isinstance(last, Mapping) or last.get("type") not in ("response", "error"):
        return {"error": "the streaming worker's output ended without its response", "type": "error"}
    return {key: value for key, value in last.items() if key != "type"} | {"type": last["type"]}


# -- the job client --------------------------------------------------------------------------


@dataclass(frozen=True)
class JobResult:
    """A job's last reply: COMPLETED with its output, or FAILED/CANCELLED/TIMED_OUT with the
    worker's message and, when the worker said, its gRPC code name and reason."""

    job_id: str
    status: str
    output: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    error_code: str = ""
    reason: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "COMPLETED"

    @staticmethod
    def from_reply(reply: Mapping[str, Any]) -> JobResult:
        """/runsync's or /status's reply; a streaming worker's list of partials reads as its last."""
        output = reply.get("output")
        status = str(reply.get("status", ""))
        if isinstance(output, list):
            output = _last_partial(output)
            if output.pop("type") == "error" and status == "COMPLETED":
                status = "FAILED"  # the job ran to its end, which was this error
        output = dict(output) if isinstance(output, Mapping) else {}
        if status == "COMPLETED":
            return JobResult(str(reply.get("id", "")), status, output)
        reason = output.get("reason")
        return JobResult(
            str(reply.get("id", "")),
            status,
            output,
            error=str(reply.get("error") or output.get("error") or status),
            error_code=str(output.get("error_code") or ""),
            reason=reason if isinstance(reason, str) else None,
        )

    def worker_error(self) -> ParakeetError:
        """A failed job as the client's error, with the worker's code and reason.

        A job that failed without a code (the worker died, or RunPod's test API dropped the
        output) is UNAVAILABLE, one that ran out of RunPod's execution time DEADLINE_EXCEEDED;
        a reason that contradicts the code is not trusted: the code's default stands."""
        default = "DEADLINE_EXCEEDED" if self.status == "TIMED_OUT" else "UNAVAILABLE"
        code = getattr(grpc.StatusCode, self.error_code or default, grpc.StatusCode.UNKNOWN)
        reason = self.reason
        if reason in REASONS and REASONS[reason].code != code:
            reason = None
        return ParakeetError.for_code(code, self.error, request_id=self.job_id or None, reason=reason)


class RunPodJobs:
    """Runs jobs on RunPod serverless endpoints with one API key: POST /runsync, then GET
    /status/ID every `poll_interval_s` while the job outlives runsync's wait, for at most
    `max_wait_s` (or a call's `timeout`, whichever is shorter). With `queued=True` a call posts
    to /run instead (RunPod's queue, for many jobs at once) and polls /status from the start.

    Every failure is a `ParakeetError`: a refused key FailedPrecondition (BACKEND_CREDENTIALS),
    an unreachable endpoint or an HTTP error Unavailable (BACKEND_UNAVAILABLE), a payload over
    RunPod's limit ResourceExhausted (PAYLOAD_TOO_LARGE), the time running out DeadlineExceeded.
    `retry` says how often a transient failure is tried again first (default: never).
    """

    def __init__(
        self,
        api_key: str,
        poll_interval_s: float = 1.0,
        max_wait_s: float = 3600.0,
        retry: Retry = NO_RETRY,
    ) -> None:
        self._api_key = api_key
        self._poll_interval_s = poll_interval_s
        self._max_wait_s = max_wait_s
        self._retry = retry

    def call(
        self,
        endpoint: RunPodEndpoint,
        request: Message,
        response_type: type[ResponseT],
        timeout: float | None = None,
        label: str = "the RunPod endpoint",
        queued: bool = False,
    ) -> ResponseT:
        """Send `request` as one job and read the worker's output as `response_type`.

        A job the worker failed with a retryable reason (WARMING_UP, CONCURRENCY_LIMIT, ...) is
        submitted again per the retry policy; a job that failed without a reason is not (it may
        have crashed its worker, and would again)."""
        result = self._run(endpoint, request_to_json(request), timeout, label, queued)
        try:
            return response_from_json(result.output, response_type)
        except (ValueError, json_format.ParseError) as error:
            raise Unavailable(
                f"{label} answered output this client cannot read ({error})", reason="BACKEND_UNAVAILABLE"
            ) from None

    def enroll(
        self,
        endpoint: RunPodEndpoint,
        request: diarization_pb2.EnrollRequest,
        timeout: float | None = None,
        label: str = "the RunPod endpoint",
    ) -> diarization_pb2.EnrollResponse:
        """A voiceprint from the worker's diarization engine: the request as an enroll job
        (`{"task": "enroll", "audio": ..., "name": ...}`), retried as `call` retries."""
        job_input = {ENROLL_TASK_FIELD: ENROLL_TASK, **request_to_json(request)}
        result = self._run(endpoint, job_input, timeout, label, queued=False)
        try:
            return enrolled_from_json(result.output)
        except (ValueError, json_format.ParseError) as error:
            raise Unavailable(
                f"{label} answered output this client cannot read ({error}); does it run enroll jobs?",
                reason="BACKEND_UNAVAILABLE",
            ) from None

    def _run(
        self,
        endpoint: RunPodEndpoint,
        job_input: Mapping[str, Any],
        timeout: float | None,
        label: str,
        queued: bool,
    ) -> JobResult:
        """One job until it completes; a failed one raised as the worker's error, after the retries
        the policy allows for a reason the worker said is retryable."""
        remaining = self._budget(timeout)
        submit = self.submit_queued if queued else self.submit
        attempt = 1
        while True:
            result = submit(endpoint, job_input, remaining(), label)
            if result.completed:
                return result
            error = result.worker_error()
            wait = self._retry.delay(attempt, None)
            retry = error.retryable and error.reason == result.reason  # the worker said so
            if not retry or attempt >= self._retry.attempts or wait >= remaining():
                raise error
            attempt += 1
            time.sleep(wait)

    def submit(
        self,
        endpoint: RunPodEndpoint,
        job_input: Mapping[str, Any],
        timeout: float | None = None,
        label: str = "the RunPod endpoint",
    ) -> JobResult:
        """Run one job with `job_input` until it ends; `label` names the endpoint in errors."""
        payload = _payload(job_input)
        remaining = self._budget(timeout)
        reply = self._http(label, f"{endpoint.base_url}/runsync", payload, remaining)
        return self._poll(endpoint, reply, remaining, label, cancel=False)

    def submit_queued(
        self,
        endpoint: RunPodEndpoint,
        job_input: Mapping[str, Any],
        timeout: float | None = None,
        label: str = "the RunPod endpoint",
    ) -> JobResult:
        """Queue one job with POST /run and poll /status until it ends. /run answers at once, so
        many threads can keep many jobs queued; a job still running at the deadline is cancelled
        (POST /cancel/ID) so that no worker goes on with it for nobody."""
        payload = _payload(job_input)
        remaining = self._budget(timeout)
        reply = self._http(label, f"{endpoint.base_url}/run", payload, remaining)
        if not reply.get("id"):
            raise Unavailable(f"{label} answered without a job id: {reply}", reason="BACKEND_UNAVAILABLE")
        return self._poll(endpoint, reply, remaining, label, cancel=True)

    def _poll(
        self,
        endpoint: RunPodEndpoint,
        reply: dict[str, Any],
        remaining: Callable[[], float],
        label: str,
        cancel: bool,
    ) -> JobResult:
        """GET /status/ID every `poll_interval_s` until the job is in a terminal status."""
        job_id = reply.get("id")
        while reply.get("status") not in TERMINAL_STATUSES:
            job_id = reply.get("id") or job_id
            if not job_id:
                raise Unavailable(f"{label} answered without a job id: {reply}", reason="BACKEND_UNAVAILABLE")
            if remaining() <= 0:
                if cancel:
                    self._cancel(endpoint, str(job_id), label)
                raise DeadlineExceeded(f"the deadline passed while job {job_id} on {label} was still running")
            time.sleep(min(self._poll_interval_s, max(remaining(), 0.0)))
            try:
                reply = self._http(label, f"{endpoint.base_url}/status/{job_id}", None, remaining)
            except DeadlineExceeded:  # the deadline fell while /status was answering
                if cancel:
                    self._cancel(endpoint, str(job_id), label)
                raise
        return JobResult.from_reply({"id": job_id, **reply} if job_id else reply)

    def _cancel(self, endpoint: RunPodEndpoint, job_id: str, label: str) -> None:
        """Best effort: a job nobody waits for any more should not keep a worker (and the bill) busy."""
        # The deadline error that follows is what the caller needs to know, not this one's.
        with contextlib.suppress(ParakeetError, _Transient):
            self._http_once(label, f"{endpoint.base_url}/cancel/{job_id}", b"{}", 5.0)

    def stream(
        self,
        endpoint: RunPodEndpoint,
        request: Message,
        response_type: type[ResponseT],
        timeout: float | None = None,
        label: str = "the RunPod endpoint",
    ) -> Iterator[streaming_pb2.FinalResult | ResponseT]:
        """Run `request` on a streaming worker (RUNPOD_STREAM=1): each speaker-attributed final as
        it is ready, then the whole response last. POST /run, then GET /stream/{job_id} every
        `poll_interval_s` until the job ends; a failed job raises as `call` does, after the
        finals that came before it."""
        remaining = self._budget(timeout)
        reply = self._http(label, f"{endpoint.base_url}/run", _payload(request_to_json(request)), remaining)
        job_id = reply.get("id")
        if not job_id:
            raise Unavailable(f"{label} answered without a job id: {reply}", reason="BACKEND_UNAVAILABLE")
        answered = False
        while True:
            for item in reply.get("stream") or []:
                partial = item.get("output") if isinstance(item, Mapping) else None
                if not isinstance(partial, Mapping):
                    continue
                kind = partial.get("type")
                if kind == "error" or "error" in partial:
                    raise JobResult.from_reply(
                        {"id": job_id, "status": "FAILED", "output": partial}
                    ).worker_error()
                try:
                    if kind == "final":
                        yield final_from_json(partial)
                    elif kind == "response":
                        answered = True
                        yield response_from_json(
                            {k: v for k, v in partial.items() if k != "type"}, response_type
                        )
                except (ValueError, json_format.ParseError) as error:
                    raise Unavailable(
                        f"{label} streamed output this client cannot read ({error})",
                        reason="BACKEND_UNAVAILABLE",
                    ) from None
            status = reply.get("status")
            if status in TERMINAL_STATUSES and status != "COMPLETED":
                raise JobResult.from_reply({**reply, "id": job_id}).worker_error()
            if status == "COMPLETED":
                break
            if remaining() <= 0:
                raise DeadlineExceeded(f"the deadline passed while job {job_id} on {label} was still running")
            if not reply.get("stream"):
                time.sleep(min(self._poll_interval_s, max(remaining(), 0.0)))
            reply = self._http(label, f"{endpoint.base_url}/stream/{job_id}", None, remaining)
        if not answered:
            raise Unavailable(
                f"{label} ended job {job_id} without a response; is it a streaming worker (RUNPOD_STREAM=1)?",
                reason="BACKEND_UNAVAILABLE",
            )

    def _budget(self, timeout: float | None) -> Callable[[], float]:
        """Seconds left for a job started now: `max_wait_s`, or `timeout` when shorter."""
        started = time.monotonic()

        def remaining() -> float:
            budget = self._max_wait_s - (time.monotonic() - started)
            return budget if timeout is None else min(budget, timeout - (time.monotonic() - started))

        return remaining

    def _http(
        self, label: str, url: str, body: bytes | None, remaining: Callable[[], float]
    ) -> dict[str, Any]:
        """One request, tried again per the retry policy while RunPod rate-limits it (429), has
        trouble (5xx) or cannot be reached; each wait honours Retry-After and the deadline."""
        attempt = 1
        while True:
            try:
                return self._http_once(label, url, body, remaining())
            except _Transient as transient:
                wait = self._retry.delay(attempt, transient.retry_after)
                if attempt >= self._retry.attempts or wait >= remaining():
                    error = transient.error
                    if attempt > 1:
                        error = type(error)(f"{error.details} (tried {attempt} times)", reason=error.reason)
                    raise error from None
                attempt += 1
                time.sleep(wait)

    def _http_once(self, label: str, url: str, body: bytes | None, timeout: float) -> dict[str, Any]:
        request = urllib.request.Request(
            url,
            data=body,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=max(timeout, 0.001)) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 405 and body is None:
                # RunPod's API reads /status and /stream with GET; the SDK's local test API
                # (--rp_serve_api) only takes POST there.
                return self._http_once(label, url, b"{}", timeout)
            if error.code in (401, 403):
                raise FailedPrecondition(
                    f"{label} refused {API_KEY_ENV} (HTTP {error.code}); check the key",
                    reason="BACKEND_CREDENTIALS",
                ) from None
            if error.code == 413:
                raise ResourceExhausted(
                    f"{label} refused the job as too large (HTTP 413): send an https URL to the audio instead",
                    reason="PAYLOAD_TOO_LARGE",
                ) from None
            unavailable = Unavailable(
                f"{label} is unavailable: HTTP {error.code} from {url}"
                + (" (rate limited)" if error.code == 429 else ""),
                reason="BACKEND_UNAVAILABLE",
            )
            if error.code in RETRY_HTTP_STATUSES:
                raise _Transient(unavailable, _retry_after(error.headers.get("Retry-After"))) from None
            raise unavailable from None
        except TimeoutError:
            raise DeadlineExceeded(f"the deadline passed while waiting for {label}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            if isinstance(getattr(error, "reason", None), TimeoutError):  # a connect that timed out
                raise DeadlineExceeded(f"the deadline passed while waiting for {label}") from None
            unreachable = Unavailable(
                f"{label} is unavailable: {type(error).__name__} calling {url}", reason="BACKEND_UNAVAILABLE"
            )
            if isinstance(error, ValueError):  # a reply that is not JSON: not a network hiccup
                raise unreachable from None
            raise _Transient(unreachable, None) from None
        if not isinstance(reply, dict):
            raise Unavailable(f"{label} answered {reply!r}, not a JSON object", reason="BACKEND_UNAVAILABLE")
        return reply


class _Transient(Exception):
    """A failure the same request may not meet again: the error to raise when no retry is left,
    and how long the server asked to wait (Retry-After), if it did."""

    def __init__(self, error: ParakeetError, retry_after: float | None) -> None:
        super().__init__(error.details)
        self.error = error
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: a number of seconds, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _payload(job_input: Mapping[str, Any]) -> bytes:
    """The job's body, refused before sending when RunPod would refuse it."""
    payload = json.dumps({"input": job_input})
    if len(payload) > RUNPOD_MAX_PAYLOAD_BYTES:
        raise ResourceExhausted(
            f"the audio is {len(payload) / 1e6:.1f} MB as base64 JSON; RunPod accepts at most "
            f"{RUNPOD_MAX_PAYLOAD_BYTES / 1e6:.0f} MB per job: send an https URL to the audio instead",
            reason="PAYLOAD_TOO_LARGE",
        )
    return payload.encode()
