"""The one table of response formats: names, enum values, which RPCs render each, which carry a document.

Every path that takes a `response_format` (the gRPC servicers, the RunPod workers, the HTTP
gateway, this client and its CLI) reads it through `parse`, so an unknown format, or one an RPC
does not render, is refused with the same message and the same reason (UNSUPPORTED_FORMAT)
wherever it was sent. It lives in the client package because the client must not import the
server, and the server may import the client.

    name           enum                          document  transcribe  diarize  orchestrate
    json           RESPONSE_FORMAT_JSON          no        yes         yes      yes
    verbose_json   RESPONSE_FORMAT_VERBOSE_JSON  no        yes         yes      yes
    text           RESPONSE_FORMAT_TEXT          yes       yes         -        yes
    srt            RESPONSE_FORMAT_SRT           yes       yes         -        yes
    vtt            RESPONSE_FORMAT_VTT           yes       yes         -        yes
    rttm           RESPONSE_FORMAT_RTTM          yes       -           yes      with diarize=true

RESPONSE_FORMAT_UNSPECIFIED (and an empty name) means json. The gateway's OpenAI
`response_format` names are these same names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from parakeet.errors import InvalidArgument
from parakeet.v1 import audio_pb2

# The reason every format refusal carries (parakeet.errors.REASONS).
REASON = "UNSUPPORTED_FORMAT"
_PREFIX = "RESPONSE_FORMAT_"

# A format as callers give it: "srt" (any case), "RESPONSE_FORMAT_SRT", the enum value, or
# None/"" for the default (json).
FormatLike = str | int | None


class Rpc(enum.Enum):
    """The RPCs that render formats; the value is the service's name in messages (and the RunPod
    endpoint's name)."""

    TRANSCRIBE = "transcription"
    DIARIZE = "diarization"
    ORCHESTRATE = "orchestrator"


_ALL = frozenset(Rpc)
_TRANSCRIPT = frozenset({Rpc.TRANSCRIBE, Rpc.ORCHESTRATE})
_TURNS = frozenset({Rpc.DIARIZE, Rpc.ORCHESTRATE})
_NEEDS_TRANSCRIPT = "it renders a transcript: use the transcription or orchestrator service"
_NEEDS_TURNS = "it lists speaker turns: use the diarization or orchestrator service"


@dataclass(frozen=True)
class ResponseFormat:
    """One row of the table."""

    name: str
    value: audio_pb2.ResponseFormat
    # Whether the response's `document` holds the rendered result (else only structured fields).
    document: bool
    rpcs: frozenset[Rpc]
    # Whether it lists speaker turns, so an orchestrate call must diarize to render it.
    needs_speakers: bool = False
    # Why an RPC outside `rpcs` refuses it (goes into the message).
    why_not: str = ""


FORMATS: tuple[ResponseFormat, ...] = (
    ResponseFormat("json", audio_pb2.RESPONSE_FORMAT_JSON, False, _ALL),
    ResponseFormat("verbose_json", audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON, False, _ALL),
    ResponseFormat("text", audio_pb2.RESPONSE_FORMAT_TEXT, True, _TRANSCRIPT, why_not=_NEEDS_TRANSCRIPT),
    ResponseFormat("srt", audio_pb2.RESPONSE_FORMAT_SRT, True, _TRANSCRIPT, why_not=_NEEDS_TRANSCRIPT),
    ResponseFormat("vtt", audio_pb2.RESPONSE_FORMAT_VTT, True, _TRANSCRIPT, why_not=_NEEDS_TRANSCRIPT),
    ResponseFormat(
        "rttm", audio_pb2.RESPONSE_FORMAT_RTTM, True, _TURNS, needs_speakers=True, why_not=_NEEDS_TURNS
    ),
)
DEFAULT = FORMATS[0]
_BY_NAME = {row.name: row for row in FORMATS}
_BY_VALUE = {int(row.value): row for row in FORMATS} | {int(audio_pb2.RESPONSE_FORMAT_UNSPECIFIED): DEFAULT}


class UnsupportedFormat(InvalidArgument, ValueError):
    """A response_format that does not exist, or that the RPC does not render.

    An InvalidArgument (reason UNSUPPORTED_FORMAT), as the servers send it, so a client-side
    refusal and a server-side one are caught alike; a ValueError, since the value is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason=REASON)


def _renders(row: ResponseFormat, rpc: Rpc | None, speakers: bool) -> bool:
    """Whether `rpc` renders `row`; `speakers` says whether an orchestrate call diarizes (a
    diarize call always finds speakers)."""
    if rpc is not None and rpc not in row.rpcs:
        return False
    return speakers or not row.needs_speakers or rpc is Rpc.DIARIZE


def names(rpc: Rpc | None = None, *, speakers: bool = True) -> list[str]:
    """The short names `rpc` renders (all of them when None), in contract order; without
    `speakers` (an orchestrate call that does not diarize), none that lists speaker turns."""
    return [row.name for row in FORMATS if _renders(row, rpc, speakers)]


def document_names() -> frozenset[str]:
    """The formats answered with the rendered `document` rather than structured fields."""
    return frozenset(row.name for row in FORMATS if row.document)


def lookup(value: FormatLike) -> ResponseFormat | None:
    """The row for a name (any case, with or without RESPONSE_FORMAT_) or enum value; None if
    there is none. None, "" and UNSPECIFIED are json."""
    if value is None:
        return DEFAULT
    if isinstance(value, bool):  # a JSON true/false is not a format, though it is an int
        return None
    if isinstance(value, int):
        return _BY_VALUE.get(value)
    name = value.strip().lower()
    name = name.removeprefix(_PREFIX.lower())
    if name in ("", "unspecified"):
        return DEFAULT
    return _BY_NAME.get(name)


def _shown(value: FormatLike) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def resolve(value: FormatLike, rpc: Rpc | None = None, *, speakers: bool = True) -> ResponseFormat:
    """The row for `value` if `rpc` renders it (with `speakers`: whether the call finds speakers),
    else UnsupportedFormat naming the formats it does render."""
    row = lookup(value)
    allowed = ", ".join(names(rpc, speakers=speakers))
    where = f"the {rpc.value} service" if rpc is not None else "this API"
    if row is None:
        raise UnsupportedFormat(f"{where} has no response_format {_shown(value)}; use one of: {allowed}")
    if rpc is not None and rpc not in row.rpcs:
        raise UnsupportedFormat(
            f"{where} has no response_format {row.name} ({row.why_not}); use one of: {allowed}"
        )
    if not _renders(row, rpc, speakers):
        raise UnsupportedFormat(
            f"response_format {row.name} lists speaker turns: set diarize=true, or use one of: {allowed}"
        )
    return row


def parse(value: FormatLike, rpc: Rpc | None = None, *, speakers: bool = True) -> audio_pb2.ResponseFormat:
    """The enum value for `value` if `rpc` renders it; UNSPECIFIED comes back as JSON."""
    return resolve(value, rpc, speakers=speakers).value


def name_of(value: int) -> str:
    """The short name of an enum value ("json" for UNSPECIFIED); a number from a newer contract
    stays a number, as text."""
    row = _BY_VALUE.get(value)
    return row.name if row is not None else str(value)
