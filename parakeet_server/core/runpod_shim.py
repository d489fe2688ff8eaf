"""JSON job input <-> proto messages for the RunPod handlers, and the error mapping for that path.

Each RunPod handler is this shim over the same servicer the gRPC server hosts: the job input is
turned into the servicer's request message with protobuf `json_format` (after accepting the
shapes existing clients send: `audio` as a bare URL or base64 string, `audio_format` beside it,
`response_format` as "json"/"srt"/...), the servicer runs, and the response goes back as JSON
with snake_case names. Errors come back as `{"error": "...", "error_code": "INVALID_ARGUMENT",
"reason": "AUDIO_UNDECODABLE"}` with the same message, code and ErrorInfo reason gRPC sends.

The response JSON (`response_to_json`) and the request JSON callers send (`request_to_json`)
are the client's (`parakeet.runpod`), so the job client and the workers share one mapping.

Every endpoint accepts every field the original service's RunPod handlers read (LEGACY_FIELDS),
so the input an existing client sends works on each one; a field that means nothing on an
endpoint is named in the response's `warnings`. Any other field is an INVALID_ARGUMENT that
lists what the endpoint accepts. Base64 is decoded strictly everywhere (parakeet_server.core.base64_strict):
json_format alone skips characters outside the alphabet and would decode other bytes.

A streaming worker (`run_stream_worker`) takes the same input but hands the SDK a generator
handler: its partial results go out on `/stream/{job_id}` as they are ready, an error as a last
partial `{"type": "error", "error", "error_code", "reason"}`, and `/runsync` answers the list of
every partial (`return_aggregate_stream`), whose last item is the whole response. The SDK picks
a generator or a plain handler by the function's type, so a worker is one or the other for its
whole life: a worker started with `run_worker` answers exactly as it always did.

A worker may run more than one kind of job (`Task`), chosen by the input's `task` field: a job
without one is the endpoint's own request (Diarize on the diarization endpoint), and
`{"task": "enroll", "audio": ..., "name": "Alice"}` an EnrollRequest on the workers that host a
diarization engine, answered with the voiceprint JSON `parakeet enroll` writes. A task the worker
does not run is INVALID_FIELD naming the tasks it does.
"""

from __future__ import annotations

import base64
import functools
import logging
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from parakeet.formats import Rpc, lookup
from parakeet.runpod import ENROLL_TASK, ENROLL_TASK_FIELD, enrolled_to_json, response_to_json
from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, transcription_pb2
from parakeet_server.core.base64_strict import InvalidBase64, decode_base64_field, decode_base64_strict
from parakeet_server.core.context import CallContext, JobContext
from parakeet_server.core.errors import InvalidRequest, PreconditionFailed, ServiceError
from parakeet_server.core.formats import requested_format
from parakeet_server.core.logs import configure_logging
from parakeet_server.core.runtime_hygiene import exit_on_signal, prepare_process

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT", bound=Message)
Servicer = Callable[[RequestT, CallContext], Message]
# A streaming worker's job: the parsed request and the warnings about its input in, JSON partials
# out (the last one the whole response); errors are raised as ServiceError.
JobStream = Callable[[RequestT, list[str]], Iterator[dict[str, Any]]]
T = TypeVar("T")

_URL_SCHEMES = ("http://", "https://")

# The job input's field that picks the task (the client's names); DEFAULT_TASK: no `task` field.
TASK_FIELD = ENROLL_TASK_FIELD
DEFAULT_TASK = ""
# Where each named task runs, for the message to a worker that does not run it.
_TASK_HOSTS = {ENROLL_TASK: "the diarization endpoint, the single endpoint or the orchestrator"}


# The fields the original service's RunPod handlers read: its diarization handler audio,
# audio_format and num_speakers; its transcription handler audio, audio_format, language,
# response_format, timestamps, temperature, word_timestamps and diarization_segments; its single
# endpoint diarize besides. Each ignored any other field. Every endpoint here accepts all of them.
LEGACY_FIELDS = frozenset(
    {
        "audio",
        "audio_format",
        "diarization_segments",
        "diarize",
        "language",
        "num_speakers",
        "response_format",
        "temperature",
        "timestamps",
        "word_timestamps",
    }
)

_ENDPOINTS = {
    transcription_pb2.TranscribeRequest.DESCRIPTOR.full_name: "transcription",
    diarization_pb2.DiarizeRequest.DESCRIPTOR.full_name: "diarization",
    diarization_pb2.EnrollRequest.DESCRIPTOR.full_name: ENROLL_TASK,
    orchestrator_pb2.OrchestrateRequest.DESCRIPTOR.full_name: "orchestrator",
}

# A legacy field an endpoint's request has no field for is checked against a request that has
# one (a wrong type is still a mistake worth naming), then left out with a warning saying why.
_CARRIERS: dict[str, type[Message]] = {
    "diarization_segments": transcription_pb2.TranscribeRequest,
    "diarize": orchestrator_pb2.OrchestrateRequest,
    "language": orchestrator_pb2.OrchestrateRequest,
    "num_speakers": orchestrator_pb2.OrchestrateRequest,
    "timestamps": orchestrator_pb2.OrchestrateRequest,
    "word_timestamps": orchestrator_pb2.OrchestrateRequest,
}
_NO_TRANSCRIPT = "the diarization endpoint returns speaker turns, not a transcript"
_WHY_IGNORED = {
    ("transcription", "diarize"): (
        "the transcription endpoint takes speakers only from diarization_segments (the "
        "diarization endpoint's segments); the orchestrator endpoint finds them itself"
    ),
    ("transcription", "num_speakers"): (
        "the transcription endpoint does not find speakers; send num_speakers to the diarization endpoint"
    ),
    ("diarization", "diarize"): "the diarization endpoint always finds speakers",
    ("diarization", "language"): _NO_TRANSCRIPT,
    ("diarization", "timestamps"): _NO_TRANSCRIPT,
    ("diarization", "word_timestamps"): _NO_TRANSCRIPT,
    ("diarization", "diarization_segments"): "the diarization endpoint finds the speaker turns itself",
    ("orchestrator", "diarization_segments"): (
        "the orchestrator endpoint finds the speaker turns itself (with diarize: true)"
    ),
}
_NO_TEMPERATURE = "parakeet decodes greedily and has no sampling temperature"


def _endpoint(descriptor: Descriptor) -> str:
    return _ENDPOINTS.get(descriptor.full_name, descriptor.name)


def _what(endpoint: str) -> str:
    """The endpoint (or task) as messages name it."""
    return "the enroll task" if endpoint == ENROLL_TASK else f"the {endpoint} endpoint"


def _legacy(endpoint: str) -> frozenset[str]:
    """The legacy fields `endpoint` accepts: all of them, but only the audio's on the enroll task,
    which no original client sent (so nothing there is ignored with a warning)."""
    return frozenset({"audio", "audio_format"}) if endpoint == ENROLL_TASK else LEGACY_FIELDS


def accepted_fields(request_type: type[Message]) -> list[str]:
    """What a RunPod job's input may hold for `request_type`: its proto fields and LEGACY_FIELDS."""
    descriptor = cast(Descriptor, request_type.DESCRIPTOR)
    return sorted(_legacy(_endpoint(descriptor)) | set(descriptor.fields_by_name))


def _field_of(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    """The field `key` names in the JSON mapping: its proto name or its lowerCamelCase JSON name."""
    found = descriptor.fields_by_name.get(key)
    if found is None:
        found = next((f for f in descriptor.fields if f.json_name == key), None)
    return found


@functools.cache
def _holds_bytes(descriptor: Descriptor, seen: frozenset[str] = frozenset()) -> bool:
    """Whether a message of this type can carry a bytes field anywhere inside it."""
    for member in descriptor.fields:
        if member.type == FieldDescriptor.TYPE_BYTES:
            return True
        nested = member.message_type
        if (
            nested is not None
            and nested.full_name not in seen
            and _holds_bytes(nested, seen | {descriptor.full_name})
        ):
            return True
    return False


def _strict_value(value: Any, member: FieldDescriptor, name: str) -> Any:
    if member.type == FieldDescriptor.TYPE_BYTES and isinstance(value, str):
        content = decode_base64_field(value, name)
        # json_format decodes what passed (either alphabet, padding optional) to the same bytes,
        # except text wrapped over lines, whose padding it miscounts: it gets the plain form then.
        wrapped = any(space in value for space in " \t\r\n")
        return base64.b64encode(content).decode() if wrapped else value
    nested = member.message_type
    if nested is not None and isinstance(value, Mapping) and _holds_bytes(nested):
        return with_strict_bytes(value, nested, f"{name}.")
    return value


def with_strict_bytes(document: Mapping[str, Any], descriptor: Descriptor, path: str = "") -> dict[str, Any]:
    """`document` (the JSON of a `descriptor` message) with every bytes field checked strictly.

    json_format skips characters outside the base64 alphabet, so without this `"!!!"` reads as 0
    bytes and `"UklG!!!RiQ="` as other bytes than were meant."""
    checked = dict(document)
    for key, value in document.items():
        member = _field_of(descriptor, key)
        if member is None or value is None:
            continue
        name = f"{path}{member.name}"
        entry = member.message_type
        if entry is not None and entry.GetOptions().map_entry:
            if isinstance(value, Mapping):
                value_field = entry.fields_by_name["value"]
                checked[key] = {k: _strict_value(v, value_field, f"{name}[{k}]") for k, v in value.items()}
        elif member.is_repeated and isinstance(value, list):
            checked[key] = [_strict_value(v, member, f"{name}[{i}]") for i, v in enumerate(value)]
        else:
            checked[key] = _strict_value(value, member, name)
    return checked


def _audio_from_string(value: str) -> audio_pb2.Audio:
    """A bare string is a URL when it looks like one, else base64 (a data: URI prefix is allowed)."""
    text = value.strip()
    if text.lower().startswith(_URL_SCHEMES):
        return audio_pb2.Audio(uri=text)
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        content = decode_base64_strict(text)
    except InvalidBase64 as error:
        raise InvalidRequest(
            "'audio' must be an http(s) URL or base64-encoded audio; the string given is neither "
            f"(as base64: {error})",
            reason="INVALID_FIELD",
        ) from None
    if not content:
        raise InvalidRequest(
            "'audio' is empty; send an http(s) URL or base64-encoded audio", reason="AUDIO_MISSING"
        )
    return audio_pb2.Audio(content=content)


def _normalise_response_format(value: Any, rpc: Rpc | None = None, speakers: bool = True) -> Any:
    """A format name as its enum value (`parakeet.formats`); the servicer then decides whether its
    RPC renders it, as it does over gRPC. A name the table lacks has no enum value to pass on, so
    it is refused here with the message the servicer gives an unknown value. Numbers go through
    as they are, other JSON types to json_format, which names the type it wanted."""
    if not isinstance(value, str):
        return value
    row = lookup(value)
    return row.value if row is not None else requested_format(value, rpc, speakers=speakers)


def _check_ignored(name: str, value: Any, request_name: str) -> None:
    """A legacy field the endpoint ignores must still have the type the original handlers read."""
    if name == "temperature":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidRequest(
                f"'temperature' must be a number (it is ignored), not {value!r}", reason="INVALID_FIELD"
            )
        return
    carrier = _CARRIERS[name]
    try:
        json_format.ParseDict({name: value}, carrier())
    except json_format.ParseError as error:
        where = str(error).replace(f"{carrier.DESCRIPTOR.name}.", f"{request_name}.")
        raise InvalidRequest(f"invalid job input: {where}", reason="INVALID_FIELD") from None


@dataclass
class ParsedJob(Generic[RequestT]):
    """A job's request, and what the caller should know about its input (ignored fields)."""

    request: RequestT
    warnings: list[str] = field(default_factory=list)


def parse_job(job_input: Any, request_type: type[RequestT]) -> ParsedJob[RequestT]:
    """Build `request_type` from a RunPod job's `input` object, with warnings for ignored fields."""
    if not isinstance(job_input, Mapping):
        raise InvalidRequest(
            'the job needs an "input" object, e.g. {"input": {"audio": "https://..."}}',
            reason="INVALID_FIELD",
        )
    descriptor = cast(Descriptor, request_type.DESCRIPTOR)  # the upb twin of Descriptor at runtime
    endpoint = _endpoint(descriptor)
    fields = dict(job_input)
    audio_value = fields.pop("audio", None)
    audio_format = fields.pop("audio_format", None)
    warnings = []
    for name in list(fields):
        if _field_of(descriptor, name) is not None:
            continue
        if name not in _legacy(endpoint):
            raise InvalidRequest(
                f'invalid job input: {_what(endpoint)} has no field named "{name}"; '
                f"it accepts: {', '.join(accepted_fields(request_type))}",
                reason="UNKNOWN_FIELD",
            )
        value = fields.pop(name)
        if value is None:
            continue
        _check_ignored(name, value, descriptor.name)
        reason = _NO_TEMPERATURE if name == "temperature" else _WHY_IGNORED.get((endpoint, name), "")
        warnings.append(f"'{name}' is ignored: {reason or f'{_what(endpoint)} has no use for it'}")
    if "response_format" in fields:
        rpc = Rpc(endpoint) if endpoint in {rpc.value for rpc in Rpc} else None
        # An orchestrate call renders speaker turns only when it diarizes (json_format checks the type).
        speakers = rpc is not Rpc.ORCHESTRATE or fields.get("diarize") is True
        fields["response_format"] = _normalise_response_format(fields["response_format"], rpc, speakers)
    if isinstance(fields.get("hotwords"), list):
        # JSON callers may list plain phrases: "Kubernetes" is {"phrase": "Kubernetes"} (no boost).
        fields["hotwords"] = [{"phrase": h} if isinstance(h, str) else h for h in fields["hotwords"]]
    if audio_format is not None and not isinstance(audio_format, str):
        raise InvalidRequest(
            '\'audio_format\' must be a string such as "wav" or "mp3"', reason="INVALID_FIELD"
        )
    try:
        request = json_format.ParseDict(with_strict_bytes(fields, descriptor), request_type())
    except json_format.ParseError as error:
        raise InvalidRequest(f"invalid job input: {error}", reason="INVALID_FIELD") from None
    if audio_value is None:
        raise InvalidRequest(
            "'audio' is required: an http(s) URL or base64-encoded audio", reason="AUDIO_MISSING"
        )
    audio = request.audio  # type: ignore[attr-defined]
    if isinstance(audio_value, str):
        audio.CopyFrom(_audio_from_string(audio_value))
    elif isinstance(audio_value, Mapping):
        try:
            json_format.ParseDict(
                with_strict_bytes(audio_value, cast(Descriptor, audio.DESCRIPTOR), "audio."), audio
            )
        except json_format.ParseError as error:
            raise InvalidRequest(f"invalid 'audio': {error}", reason="INVALID_FIELD") from None
    else:
        raise InvalidRequest(
            "'audio' must be a string (http(s) URL or base64) or an object with uri/content",
            reason="INVALID_FIELD",
        )
    if audio_format:
        audio.format = audio_format
    return ParsedJob(request, warnings)


def parse_job_input(job_input: Any, request_type: type[RequestT]) -> RequestT:
    """Build `request_type` from a RunPod job's `input` object (`parse_job` without the warnings)."""
    return parse_job(job_input, request_type).request


def output_with_warnings(response: Message, warnings: list[str]) -> dict[str, Any]:
    """The response's JSON with `warnings` about the job's input ahead of the servicer's own.

    They travel in the response's typed `warnings` field (every response of the contract has
    one), so the orchestrator's RunPod backend reads them back like any other field."""
    if warnings and "warnings" in response.DESCRIPTOR.fields_by_name:
        own = list(response.warnings)  # type: ignore[attr-defined]
        del response.warnings[:]  # type: ignore[attr-defined]
        response.warnings.extend([*warnings, *own])  # type: ignore[attr-defined]
        warnings = []
    document = response_to_json(response)
    if warnings:  # a response type without the field: the JSON still says it
        document["warnings"] = warnings
    return document


def _prepared(prepare: Callable[[], T]) -> T | ServiceError:
    """What `prepare` builds, or the error every job should be answered with instead."""
    try:
        return prepare()
    except ServiceError as error:
        failure = error
    except Exception as error:
        log.exception("warm-up failed")
        failure = PreconditionFailed(
            f"the model could not be loaded ({type(error).__name__}); see the worker log",
            reason="MODEL_NOT_LOADED",
        )
    log.error("serving errors only: %s", failure.message)
    return failure


def ready_or_refusing(prepare: Callable[[], Servicer[RequestT]]) -> Servicer[RequestT]:
    """Build and warm up the servicer now; if that fails, one that answers every job with the reason.

    A worker that crash-loops on a missing token shows users nothing; one that keeps answering
    `{"error": "accept the conditions of ..."}` tells them what to fix.
    """
    prepared = _prepared(prepare)
    if not isinstance(prepared, ServiceError):
        return prepared
    failure = prepared

    def refuse(request: RequestT, context: CallContext) -> Message:
        raise failure

    return refuse


def streaming_or_refusing(prepare: Callable[[], JobStream[RequestT]]) -> JobStream[RequestT]:
    """`ready_or_refusing` for a streaming worker: each job's only partial is the reason."""
    prepared = _prepared(prepare)
    if not isinstance(prepared, ServiceError):
        return prepared
    failure = prepared

    def refuse(request: RequestT, warnings: list[str]) -> Iterator[dict[str, Any]]:
        raise failure  # stream_job turns it into the job's one partial

    return refuse


@dataclass(frozen=True)
class Task(Generic[RequestT]):
    """One kind of job a worker runs: the request its input is parsed as, the servicer method
    that answers it, and how the answer is written as the job's output."""

    request_type: type[RequestT]
    servicer: Servicer[RequestT]
    to_json: Callable[[Any, list[str]], dict[str, Any]] = output_with_warnings


# A worker's tasks by the name a job's `task` field gives (DEFAULT_TASK: a job without one).
Tasks = Mapping[str, Task[Any]]


def _enroll_output(response: diarization_pb2.EnrollResponse, warnings: list[str]) -> dict[str, Any]:
    return enrolled_to_json(response)  # the enroll task accepts no ignored field: no warnings


def enroll_task(
    enroll: Servicer[diarization_pb2.EnrollRequest],
) -> Task[diarization_pb2.EnrollRequest]:
    """The enroll job (`{"task": "enroll", "audio": ..., "name": ...}`) over a servicer's Enroll,
    answered with the voiceprint file `parakeet enroll` writes."""
    return Task(diarization_pb2.EnrollRequest, enroll, _enroll_output)


def select_task(job_input: Any, tasks: Tasks) -> tuple[Task[Any], Any]:
    """The task a job's input names, and the input without its `task` field; a task this worker
    does not run is INVALID_FIELD naming where it runs, or the tasks this worker does run."""
    if not isinstance(job_input, Mapping):
        return tasks[DEFAULT_TASK], job_input  # parse_job says what the input should be
    name = job_input.get(TASK_FIELD)
    rest = {key: value for key, value in job_input.items() if key != TASK_FIELD}
    if name is None or name == DEFAULT_TASK:
        return tasks[DEFAULT_TASK], rest
    if isinstance(name, str) and name in tasks:
        return tasks[name], rest
    default = _endpoint(cast(Descriptor, tasks[DEFAULT_TASK].request_type.DESCRIPTOR))
    named = sorted(task for task in tasks if task != DEFAULT_TASK)
    runs = f"it runs {', '.join(repr(t) for t in named)}, or " if named else "it runs "
    if isinstance(name, str) and name in _TASK_HOSTS:
        raise InvalidRequest(
            f"the {default} endpoint does not run the '{name}' task: send it to {_TASK_HOSTS[name]}",
            reason="INVALID_FIELD",
        )
    raise InvalidRequest(
        f"'{TASK_FIELD}' {name!r} is not a task of the {default} endpoint: {runs}its own request "
        f"when '{TASK_FIELD}' is left out",
        reason="INVALID_FIELD",
    )


def tasks_or_refusing(request_types: Mapping[str, type[Message]], prepare: Callable[[], Tasks]) -> Tasks:
    """`ready_or_refusing` for a worker of several tasks: if `prepare` fails, each task answers
    every job with the reason."""
    prepared = _prepared(prepare)
    if not isinstance(prepared, ServiceError):
        return prepared
    failure = prepared

    def refuse(request: Message, context: CallContext) -> Message:
        raise failure

    return {name: Task(request_type, refuse) for name, request_type in request_types.items()}


def run_worker(request_type: type[RequestT], prepare: Callable[[], Servicer[RequestT]]) -> None:
    """A RunPod worker's whole life: process hygiene before any model library loads, logs, the
    servicer built and warmed up (or one answering every job with why not), then the job loop."""
    prepare_process()
    configure_logging()
    serve_jobs(request_type, ready_or_refusing(prepare))


def run_tasks_worker(request_types: Mapping[str, type[Message]], prepare: Callable[[], Tasks]) -> None:
    """`run_worker` for a worker of several tasks (`request_types`: each task's request, known
    before anything loads, so a worker that cannot load still refuses each task's jobs)."""
    prepare_process()
    configure_logging()
    serve_task_jobs(tasks_or_refusing(request_types, prepare))


def run_stream_worker(request_type: type[RequestT], prepare: Callable[[], JobStream[RequestT]]) -> None:
    """`run_worker` for a streaming worker: the same life, a generator handler in the job loop."""
    prepare_process()
    configure_logging()
    serve_stream_jobs(request_type, streaming_or_refusing(prepare))


def serve_jobs(request_type: type[RequestT], servicer: Servicer[RequestT]) -> None:
    """Hand jobs to the RunPod SDK's worker loop (which also reads --rp_serve_api for local tests)."""
    serve_task_jobs({DEFAULT_TASK: Task(request_type, servicer)})


def serve_task_jobs(tasks: Tasks) -> None:
    """`serve_jobs` for a worker of several tasks, each job run by the one its `task` names."""
    import runpod  # the SDK starts logging and reads sys.argv on import; keep it off other paths

    def handler(job: dict[str, Any]) -> dict[str, Any]:
        return run_task_job(job, tasks)

    # The SDK drains on SIGTERM in both of its modes; this only decides how the process leaves
    # afterwards. On RunPod its job loop takes no new job, finishes the one in flight and
    # returns. Under --rp_serve_api (and the realtime API) uvicorn stops accepting, finishes the
    # request in flight and then re-raises the signal to the handler it found: the default one
    # killed the process (status 143) before atexit ran, leaving torch's temp files behind; this
    # one exits 0 through interpreter shutdown, as the gRPC servers do after their drain.
    signal.signal(signal.SIGTERM, exit_on_signal)
    runpod.serverless.start({"handler": handler})


def serve_stream_jobs(request_type: type[RequestT], stream: JobStream[RequestT]) -> None:
    """Hand jobs to the SDK as a generator handler: each partial goes out on /stream/{job_id} as it
    is yielded, and /runsync answers the list of them all (`return_aggregate_stream`)."""
    import runpod

    def handler(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from stream_job(job, request_type, stream)

    signal.signal(signal.SIGTERM, exit_on_signal)  # see serve_jobs
    runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})


def run_job(
    job: Mapping[str, Any],
    request_type: type[RequestT],
    servicer: Servicer[RequestT],
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run one job through a servicer; never raises, never returns a traceback."""
    return run_task_job(job, {DEFAULT_TASK: Task(request_type, servicer)}, timeout_s)


def run_task_job(job: Mapping[str, Any], tasks: Tasks, timeout_s: float | None = None) -> dict[str, Any]:
    """Run one job through the task its input names (`select_task`); never raises, never returns
    a traceback."""
    try:
        task, job_input = select_task(job.get("input"), tasks)
        parsed = parse_job(job_input, task.request_type)
        return task.to_json(task.servicer(parsed.request, JobContext(timeout_s)), parsed.warnings)
    except ServiceError as error:
        return error_output(error)
    except Exception:
        log.exception("unhandled error in job %s", job.get("id", "?"))
        return dict(_INTERNAL)


_INTERNAL = {"error": "internal error; see the worker log", "error_code": "INTERNAL", "reason": "INTERNAL"}


def error_output(error: ServiceError) -> dict[str, Any]:
    """A failed job's output; error_code and reason let a caller of this worker (the
    orchestrator, parakeet.runpod) keep both."""
    return {"error": error.message, "error_code": error.code.name, "reason": error.reason}


def stream_job(
    job: Mapping[str, Any], request_type: type[RequestT], stream: JobStream[RequestT]
) -> Iterator[dict[str, Any]]:
    """One streaming job's partials; a failure is the last partial, never a raise or a traceback.

    The SDK ends a job FAILED with only the message when a partial holds "error" (RunPod's
    /status then drops the code and reason); the local test API and /stream readers that saw
    the partial keep all three."""
    try:
        parsed = parse_job(job.get("input"), request_type)
        yield from stream(parsed.request, parsed.warnings)
    except ServiceError as error:
        yield {"type": "error", **error_output(error)}
    except Exception:
        log.exception("unhandled error in streaming job %s", job.get("id", "?"))
        yield {"type": "error", **_INTERNAL}
