"""JSON job input <-> proto messages for the RunPod handlers, and the error mapping for that path.

Each RunPod handler is this shim over the same servicer the gRPC server hosts: the job input is
turned into the servicer's request message with protobuf `json_format` (after accepting the
shapes existing clients send: `audio` as a bare URL or base64 string, `audio_format` beside it,
`response_format` as "json"/"srt"/...), the servicer runs, and the response goes back as JSON
with snake_case names. Errors come back as `{"error": "..."}` with the same message gRPC sends.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from parakeet.v1 import audio_pb2
from services.core.context import CallContext, JobContext
from services.core.errors import InvalidRequest, PreconditionFailed, ServiceError

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)
Servicer = Callable[[RequestT, CallContext], Message]

_FORMAT_PREFIX = "RESPONSE_FORMAT_"
_URL_SCHEMES = ("http://", "https://")


def response_format_names() -> list[str]:
    """The short names JSON clients use: json, verbose_json, text, srt, vtt, rttm."""
    return [
        name.removeprefix(_FORMAT_PREFIX).lower()
        for name in audio_pb2.ResponseFormat.keys()  # noqa: SIM118 (an EnumTypeWrapper, not a dict)
        if name != f"{_FORMAT_PREFIX}UNSPECIFIED"
    ]


def _audio_from_string(value: str) -> audio_pb2.Audio:
    """A bare string is a URL when it looks like one, else base64 (a data: URI prefix is allowed)."""
    text = value.strip()
    if text.lower().startswith(_URL_SCHEMES):
        return audio_pb2.Audio(uri=text)
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # base64 wrapped over lines (`base64` without -w0) is common; joining costs a copy
            content = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                "'audio' must be an http(s) URL or base64-encoded audio; the string given is neither"
            ) from None
    if not content:
        raise InvalidRequest("'audio' is empty; send an http(s) URL or base64-encoded audio")
    return audio_pb2.Audio(content=content)


def _normalise_response_format(value: Any) -> Any:
    if not isinstance(value, str) or value.upper().startswith(_FORMAT_PREFIX):
        return value
    name = value.strip().lower()
    if name not in response_format_names():
        raise InvalidRequest(
            f"unknown response_format {value!r}; use one of: {', '.join(response_format_names())}"
        )
    return _FORMAT_PREFIX + name.upper()


def parse_job_input(job_input: Any, request_type: type[RequestT]) -> RequestT:
    """Build `request_type` from a RunPod job's `input` object."""
    if not isinstance(job_input, Mapping):
        raise InvalidRequest('the job needs an "input" object, e.g. {"input": {"audio": "https://..."}}')
    fields = dict(job_input)
    audio_value = fields.pop("audio", None)
    audio_format = fields.pop("audio_format", None)
    if "response_format" in fields:
        fields["response_format"] = _normalise_response_format(fields["response_format"])
    if audio_format is not None and not isinstance(audio_format, str):
        raise InvalidRequest('\'audio_format\' must be a string such as "wav" or "mp3"')
    try:
        request = json_format.ParseDict(fields, request_type())
    except json_format.ParseError as error:
        raise InvalidRequest(f"invalid job input: {error}") from None
    if audio_value is None:
        raise InvalidRequest("'audio' is required: an http(s) URL or base64-encoded audio")
    audio = request.audio  # type: ignore[attr-defined]
    if isinstance(audio_value, str):
        audio.CopyFrom(_audio_from_string(audio_value))
    elif isinstance(audio_value, Mapping):
        try:
            json_format.ParseDict(dict(audio_value), audio)
        except json_format.ParseError as error:
            raise InvalidRequest(f"invalid 'audio': {error}") from None
    else:
        raise InvalidRequest("'audio' must be a string (http(s) URL or base64) or an object with uri/content")
    if audio_format:
        audio.format = audio_format
    return request


def request_to_json(request: Message) -> dict[str, Any]:
    """A request as the job input existing clients send (the inverse of `parse_job_input`).

    The audio goes as a bare string (the URL, or base64 of the bytes) with `audio_format`
    beside it, so any RunPod worker of this service, old or new, reads it.
    """
    document = json_format.MessageToDict(request, preserving_proto_field_name=True)
    audio = document.pop("audio", None)
    if audio is not None:
        document["audio"] = audio.get("uri") or audio.get("content", "")
        if audio.get("format"):
            document["audio_format"] = audio["format"]
    value = document.get("response_format")
    if isinstance(value, str):
        document["response_format"] = value.removeprefix(_FORMAT_PREFIX).lower()
    return document


def response_from_json(output: Mapping[str, Any], response_type: type[ResponseT]) -> ResponseT:
    """A worker's JSON output as a response message (the inverse of `response_to_json`)."""
    fields = dict(output)
    fields.pop("error_code", None)
    if "response_format" in fields:
        fields["response_format"] = _normalise_response_format(fields["response_format"])
    return json_format.ParseDict(fields, response_type(), ignore_unknown_fields=True)


def response_to_json(response: Message) -> dict[str, Any]:
    """The response as existing JSON clients read it: snake_case names, zeros printed, short enums."""
    document = json_format.MessageToDict(
        response,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    value = document.get("response_format")
    if isinstance(value, str):
        short = value.removeprefix(_FORMAT_PREFIX).lower()
        document["response_format"] = "json" if short == "unspecified" else short
    return document


def ready_or_refusing(prepare: Callable[[], Servicer[RequestT]]) -> Servicer[RequestT]:
    """Build and warm up the servicer now; if that fails, one that answers every job with the reason.

    A worker that crash-loops on a missing token shows users nothing; one that keeps answering
    `{"error": "accept the conditions of ..."}` tells them what to fix.
    """
    try:
        return prepare()
    except ServiceError as error:
        failure = error
    except Exception as error:
        log.exception("warm-up failed")
        failure = PreconditionFailed(
            f"the model could not be loaded ({type(error).__name__}); see the worker log"
        )
    log.error("serving errors only: %s", failure.message)

    def refuse(request: RequestT, context: CallContext) -> Message:
        raise failure

    return refuse


def serve_jobs(request_type: type[RequestT], servicer: Servicer[RequestT]) -> None:
    """Hand jobs to the RunPod SDK's worker loop (which also reads --rp_serve_api for local tests)."""
    import runpod  # the SDK starts logging and reads sys.argv on import; keep it off other paths

    def handler(job: dict[str, Any]) -> dict[str, Any]:
        return run_job(job, request_type, servicer)

    runpod.serverless.start({"handler": handler})


def run_job(
    job: Mapping[str, Any],
    request_type: type[RequestT],
    servicer: Servicer[RequestT],
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run one job through a servicer; never raises, never returns a traceback."""
    try:
        request = parse_job_input(job.get("input"), request_type)
        return response_to_json(servicer(request, JobContext(timeout_s)))
    except ServiceError as error:
        # error_code lets a caller of this worker (the orchestrator) keep the gRPC status.
        return {"error": error.message, "error_code": error.code.name}
    except Exception:
        log.exception("unhandled error in job %s", job.get("id", "?"))
        return {"error": "internal error; see the worker log"}
