"""The bad-input corpus: one table of requests, each with the outcome every service must give.

`test_bad_input_corpus.py` runs every case against TranscriptionService, DiarizationService and
OrchestratorService, over gRPC and through the RunPod shim (`run_job`), and a subset through the
runpod SDK's local HTTP API. An `Outcome` is what the services *should* answer; where they do
not today, `bug` says why and the run is a strict xfail.

`python -m tests.reliability.corpus` prints the table that docs/reliability.md carries (a test
checks the two agree).

The corpus servers run with small limits so that the limits are cheap to reach:
`MAX_AUDIO_BYTES`, `MAX_MESSAGE_BYTES`, `TRANSCRIPTION_MAX_SECONDS`, `DIARIZATION_MAX_SECONDS`.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from parakeet import formats
from parakeet.v1 import audio_pb2, diarization_pb2, orchestrator_pb2, transcription_pb2
from parakeet_server.core.runpod_shim import LEGACY_FIELDS, parse_job_input
from tests.reliability import media
from tests.support.audio import silent_flac

SERVICES = ("transcription", "diarization", "orchestrator")
TRANSPORTS = ("grpc", "runpod")
REQUEST_TYPES: dict[str, Any] = {
    "transcription": transcription_pb2.TranscribeRequest,
    "diarization": diarization_pb2.DiarizeRequest,
    "orchestrator": orchestrator_pb2.OrchestrateRequest,
}
RESPONSE_TYPES: dict[str, Any] = {
    "transcription": transcription_pb2.TranscribeResponse,
    "diarization": diarization_pb2.DiarizeResponse,
    "orchestrator": orchestrator_pb2.OrchestrateResponse,
}
METHODS = {
    "transcription": "/parakeet.v1.TranscriptionService/Transcribe",
    "diarization": "/parakeet.v1.DiarizationService/Diarize",
    "orchestrator": "/parakeet.v1.OrchestratorService/Orchestrate",
}

# The limits the corpus servers are built with.
MAX_AUDIO_BYTES = 2 * 1024 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
TRANSCRIPTION_MAX_SECONDS = 3700.0
DIARIZATION_MAX_SECONDS = 600.0
# No error message may be longer than this: it is shown to a person, and over gRPC it travels
# in a trailer that clients cap at 16 KiB.
MAX_MESSAGE_CHARS = 2000

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
LIMIT = grpc.StatusCode.RESOURCE_EXHAUSTED

HTTP = "{http}"  # replaced by the base URL of the tests' loopback HTTP server
PORT = "{port}"  # replaced by its port
ALLOW_LOOPBACK = {"PARAKEET_FETCH_ALLOW": "127.0.0.1"}


@dataclass(frozen=True)
class Blob:
    """Audio bytes made when a case runs (some are large, some depend on the loopback URL)."""

    label: str
    make: Callable[[str], bytes]

    def data(self, base_url: str) -> bytes:
        return self.make(base_url)


def blob(label: str, make: Callable[[], bytes]) -> Blob:
    return Blob(label, lambda _base_url: make())


GOOD = blob("1 s WAV", media.good_wav)
NOT_AUDIO = blob("text", lambda: media.NOT_AUDIO)


@dataclass(frozen=True)
class Outcome:
    """What a service answers: a status code and a message substring a person can act on.

    For OK, `check` asserts on the response as JSON (RunPod's snake_case shape on both paths).
    `bug` is set where the services answer differently today: the run is a strict xfail.
    """

    code: grpc.StatusCode
    message: str = ""
    check: Callable[[dict[str, Any]], None] | None = None
    bug: str = ""


# What each service renders, as its refusals list it (parakeet.formats; the orchestrator without diarize).
TRANSCRIPT_FORMATS = ", ".join(formats.names(formats.Rpc.TRANSCRIBE))
TURN_FORMATS = ", ".join(formats.names(formats.Rpc.DIARIZE))


def invalid(message: str, bug: str = "") -> Outcome:
    return Outcome(INVALID, message, bug=bug)


def limit(message: str, bug: str = "") -> Outcome:
    return Outcome(LIMIT, message, bug=bug)


def ok(what: str, check: Callable[[dict[str, Any]], None] | None = None, bug: str = "") -> Outcome:
    return Outcome(OK, what, check=check, bug=bug)


class _Derive:
    def __repr__(self) -> str:
        return "DERIVE"


DERIVE: Any = _Derive()
MISSING: Any = type("Missing", (), {"__repr__": lambda _self: "MISSING"})()


@dataclass(frozen=True)
class Case:
    """One bad (or merely unusual) request and what every service must answer.

    - `job`: the RunPod job's `input` (MISSING: the job has no "input" key); `jobs` replaces it
      for some services (the diarization service has no `diarize` field, for instance).
    - `grpc`: the gRPC request. DERIVE builds it from the job with the shim's own parser, leaving
      out fields the service's proto does not have (a client built from the contract cannot send
      them; on the wire they are unknown fields, which proto3 ignores). A dict is a job-shaped
      input to derive from instead (for JSON-only mistakes such as a wrong type, protobuf has no
      way to express); bytes are sent as the serialized request as they are.
    - `expect` holds for every service and transport unless `paths` overrides it, keyed by
      "transport:service", "service" or "transport" (most specific first).
    - `env`: environment while the case runs (PARAKEET_FETCH_ALLOW for the redirect cases).
    - `fetches`: the case may reach the tests' loopback HTTP server (an allow-listed URL).
    - `http_api`: also run through the runpod SDK's local HTTP API (transcription worker).
    """

    name: str
    sends: str
    job: Any
    expect: Outcome
    paths: Mapping[str, Outcome] = field(default_factory=dict)
    jobs: Mapping[str, Any] = field(default_factory=dict)
    grpc: Any = DERIVE
    env: Mapping[str, str] = field(default_factory=dict)
    fetches: bool = False
    http_api: bool = False

    def outcome(self, service: str, transport: str) -> Outcome:
        for key in (f"{transport}:{service}", service, transport):
            if key in self.paths:
                return self.paths[key]
        return self.expect

    def job_for(self, service: str) -> Any:
        return self.jobs.get(service, self.job)


# -- turning a case into requests -----------------------------------------------------------


def materialise(value: Any, base_url: str) -> Any:
    """The value with Blobs as base64 text, {http} and {port} replaced by the loopback server's."""
    if isinstance(value, Blob):
        return base64.b64encode(value.data(base_url)).decode()
    if isinstance(value, str):
        return value.replace(HTTP, base_url).replace(PORT, base_url.rsplit(":", 1)[-1])
    if isinstance(value, dict):
        return {materialise(key, base_url): materialise(item, base_url) for key, item in value.items()}
    if isinstance(value, list):
        return [materialise(item, base_url) for item in value]
    return value


def runpod_job(case: Case, service: str, base_url: str) -> dict[str, Any]:
    """The whole RunPod job (`{"id": ..., "input": ...}`) for `service`."""
    job_input = case.job_for(service)
    job: dict[str, Any] = {"id": f"corpus-{case.name}"}
    if job_input is not MISSING:
        job["input"] = materialise(job_input, base_url)
    return job


def grpc_request(case: Case, service: str, base_url: str) -> bytes:
    """The serialized gRPC request for `service` (see Case.grpc)."""
    if isinstance(case.grpc, bytes):
        return case.grpc
    source = case.job_for(service) if case.grpc is DERIVE else case.grpc
    if not isinstance(source, dict):
        raise TypeError(f"{case.name}: the job is not an object; give the gRPC request explicitly")
    request_type = REQUEST_TYPES[service]
    known = set(request_type.DESCRIPTOR.fields_by_name) | {"audio", "audio_format"}
    fields = {key: value for key, value in materialise(source, base_url).items() if key in known}
    request = parse_job_input(fields, request_type)
    data: bytes = request.SerializeToString()
    return data


def wire(audio: audio_pb2.Audio | None = None, extra: bytes = b"") -> bytes:
    """Request bytes valid for all three request types: field 1 (audio) plus raw `extra` bytes."""
    head = b"" if audio is None else transcription_pb2.TranscribeRequest(audio=audio).SerializeToString()
    return head + extra


# Field 99 (unknown to every request type) as a varint; field 1 (audio) sent as a varint, which
# is the wrong wire type for a message field; a length prefix promising more bytes than follow.
UNKNOWN_FIELD_99 = b"\x98\x06\x01"
AUDIO_AS_VARINT = b"\x08\x2a"
NOT_PROTOBUF = b"\x12\x05ab"

# -- checks on successful responses ---------------------------------------------------------


def lasts(seconds: float, tolerance: float = 0.0) -> Callable[[dict[str, Any]], None]:
    def check(response: dict[str, Any]) -> None:
        assert abs(response["duration"] - seconds) <= tolerance, response["duration"]

    return check


def lasts_between(low: float, high: float) -> Callable[[dict[str, Any]], None]:
    def check(response: dict[str, Any]) -> None:
        assert low <= response["duration"] <= high, response["duration"]

    return check


def hour_of_silence(response: dict[str, Any]) -> None:
    assert response["duration"] == 3600.0
    # The random-weight fixture model "hears" filler tokens in silence (parakeet hears nothing);
    # what matters is an answer, with every segment inside the hour.
    assert all(0.0 <= s["start"] <= s["end"] <= 3600.5 for s in response["segments"])
    assert response.get("speaker_turns", []) == []


def rttm_document(response: dict[str, Any]) -> None:
    assert response["response_format"] == "rttm"
    lines = response["document"].splitlines()
    assert lines and all(line.startswith("SPEAKER audio 1 ") for line in lines), response["document"]


def ignoring(
    *fields: str, then: Callable[[dict[str, Any]], None] | None = None
) -> Callable[[dict[str, Any]], None]:
    """The response names each of `fields` as ignored in its warnings (RunPod's legacy fields)."""

    def check(response: dict[str, Any]) -> None:
        for name in fields:
            assert any(w.startswith(f"'{name}' is ignored: ") for w in response["warnings"]), response[
                "warnings"
            ]
        if then is not None:
            then(response)

    return check


def srt_document(response: dict[str, Any]) -> None:
    assert response["response_format"] == "srt"
    assert " --> " in response["document"], response["document"]


# -- the corpus -----------------------------------------------------------------------------

AUDIO_REQUIRED = invalid("audio is required: set audio.uri")
COULD_NOT_DECODE = invalid("could not decode the audio")
NON_PUBLIC = "resolves to a non-public address; only public http(s) URLs are fetched"
NOT_HTTP = invalid("the audio URL must start with http:// or https://")
DIARIZATION_ONE_SECOND = ok("diarized (1 s)", lasts(1.0))
TRANSCRIBED_ONE_SECOND = ok("transcribed (1 s)", lasts(1.0))

HUGE = 1_000_000


def speakers(name: str, sends: str, counts: dict[str, Any], diarization: Outcome, **extra: Any) -> Case:
    """A speaker-count case: diarization and orchestrator (diarize=true) get the counts.

    The transcription endpoint over RunPod ignores num_speakers (a field the original service's
    handlers read) with a warning, and refuses the counts no client of it ever sent."""
    unknown = [key for key in counts if key not in LEGACY_FIELDS]
    transcription = (
        invalid(f'has no field named "{unknown[0]}"')
        if unknown
        else ok("transcribed (1 s), counts ignored", ignoring(*counts, then=lasts(1.0)))
    )
    return Case(
        name=name,
        sends=sends,
        job={"audio": GOOD, **counts},
        jobs={"orchestrator": {"audio": GOOD, "diarize": True, **counts}},
        expect=diarization,
        paths={
            "runpod:transcription": transcription,
            "grpc:transcription": TRANSCRIBED_ONE_SECOND,
            **extra.pop("paths", {}),
        },
        **extra,
    )


def turns_case(
    name: str, sends: str, turns: Any, transcription: Outcome, mistyped: bool = False, **extra: Any
) -> Case:
    """A diarization_segments case: only TranscriptionService has the field.

    The other RunPod endpoints accept it (the original transcription handler read it) and ignore
    it, after checking its JSON types: a `mistyped` value is refused as on transcription, a
    well-typed one is ignored and the (undecodable) audio is what fails."""
    elsewhere = transcription if mistyped else COULD_NOT_DECODE
    return Case(
        name=name,
        sends=sends,
        job={"audio": NOT_AUDIO, "diarization_segments": turns},
        expect=transcription,
        paths={
            "runpod:diarization": elsewhere,
            "runpod:orchestrator": elsewhere,
            "grpc:diarization": COULD_NOT_DECODE,
            "grpc:orchestrator": COULD_NOT_DECODE,
            **extra.pop("paths", {}),
        },
        **extra,
    )


CORPUS: list[Case] = [
    # -- the job itself ---------------------------------------------------------------------
    Case(
        "job-without-input",
        'a job with no "input" (gRPC: an empty request)',
        MISSING,
        invalid('the job needs an "input" object'),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=b"",
    ),
    Case(
        "input-null",
        '"input": null (gRPC: an empty request)',
        None,
        invalid('the job needs an "input" object'),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=b"",
        http_api=False,
    ),
    Case(
        "input-is-a-list",
        '"input": ["https://..."] (gRPC: bytes that are not a protobuf message)',
        ["https://example.com/a.wav"],
        invalid('the job needs an "input" object'),
        paths={"grpc": invalid("not a valid")},
        grpc=NOT_PROTOBUF,
    ),
    Case(
        "input-is-a-string",
        '"input": "audio.wav" (gRPC: audio sent with the wrong wire type)',
        "audio.wav",
        invalid('the job needs an "input" object'),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=wire(extra=AUDIO_AS_VARINT),
    ),
    # -- the audio field --------------------------------------------------------------------
    Case(
        "audio-missing",
        "no audio at all",
        {},
        invalid("'audio' is required: an http(s) URL or base64-encoded audio"),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=b"",
        http_api=True,
    ),
    Case(
        "audio-null",
        '"audio": null',
        {"audio": None},
        invalid("'audio' is required"),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=b"",
    ),
    Case(
        "audio-empty-string",
        '"audio": "" (gRPC: content of 0 bytes)',
        {"audio": ""},
        invalid("'audio' is empty; send an http(s) URL or base64-encoded audio"),
        paths={"grpc": invalid("audio is empty (0 bytes)")},
        grpc=wire(audio_pb2.Audio(content=b"")),
        http_api=True,
    ),
    Case(
        "zero-length-content",
        '"audio": {"content": ""} (0 bytes)',
        {"audio": {"content": ""}},
        invalid("audio is empty (0 bytes)"),
    ),
    Case(
        "bad-base64",
        "a string that is neither a URL nor base64 (gRPC: those bytes as content)",
        {"audio": "!!! not base64 !!!"},
        invalid("'audio' must be an http(s) URL or base64-encoded audio; the string given is neither"),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": {"content": base64.b64encode(b"!!! not base64 !!!").decode()}},
        http_api=True,
    ),
    Case(
        "bad-base64-content",
        '"audio": {"content": "UklG!!!RiQ="} (gRPC: those bytes as content)',
        {"audio": {"content": "UklG!!!RiQ="}},
        invalid("'audio.content' is not valid base64: '!' at character 4 is not a base64 character"),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": {"content": base64.b64encode(b"UklG!!!RiQ=").decode()}},
        http_api=True,
    ),
    Case(
        "audio-is-a-number",
        '"audio": 42 (gRPC: field 1 as a varint)',
        {"audio": 42},
        invalid("'audio' must be a string (http(s) URL or base64) or an object with uri/content"),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=wire(extra=AUDIO_AS_VARINT),
        http_api=True,
    ),
    Case(
        "audio-is-a-list",
        '"audio": ["<base64>"]',
        {"audio": [GOOD]},
        invalid("'audio' must be a string (http(s) URL or base64) or an object with uri/content"),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=b"",
    ),
    Case(
        "audio-object-unknown-key",
        '"audio": {"url": ...} (gRPC: an unknown field inside Audio)',
        {"audio": {"url": "https://example.com/a.wav"}},
        invalid('invalid \'audio\': Message type "parakeet.v1.Audio" has no field named "url"'),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=b"\x0a\x03" + UNKNOWN_FIELD_99,
    ),
    Case(
        "audio-uri-and-content",
        "both audio.uri and audio.content (gRPC: both on the wire, the last wins)",
        {"audio": {"uri": "http://10.0.0.1/a.wav", "content": NOT_AUDIO}},
        invalid('should not have multiple "source" oneof fields'),
        paths={"grpc": COULD_NOT_DECODE},
        grpc=wire(audio_pb2.Audio(uri="http://10.0.0.1/a.wav"))
        + wire(audio_pb2.Audio(content=media.NOT_AUDIO)),
    ),
    Case(
        "audio-content-not-a-string",
        '"audio": {"content": 123} (gRPC: content as a varint)',
        {"audio": {"content": 123}},
        invalid("invalid 'audio': Failed to parse content field"),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=b"\x0a\x02\x10\x7b",
    ),
    Case(
        "audio-uri-not-a-string",
        '"audio": {"uri": ["http://..."]}',
        {"audio": {"uri": ["http://10.0.0.1/a.wav"]}},
        invalid("invalid 'audio': Failed to parse uri field"),
        paths={"grpc": AUDIO_REQUIRED},
        grpc=b"",
    ),
    Case(
        "audio-format-not-a-string",
        '"audio_format": 3',
        {"audio": NOT_AUDIO, "audio_format": 3},
        invalid('\'audio_format\' must be a string such as "wav" or "mp3"'),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    # -- the audio bytes --------------------------------------------------------------------
    Case(
        "not-audio-text",
        "a text file, base64",
        {"audio": NOT_AUDIO},
        COULD_NOT_DECODE,
        http_api=True,
    ),
    Case(
        "random-bytes",
        "4 KiB of random bytes",
        {"audio": blob("random", lambda: media.RANDOM_BYTES)},
        COULD_NOT_DECODE,
    ),
    Case(
        "truncated-wav-header",
        "the first 16 bytes of a WAV header",
        {"audio": blob("header", lambda: media.TRUNCATED_WAV_HEADER)},
        COULD_NOT_DECODE,
        http_api=True,
    ),
    Case(
        "wav-without-samples",
        "a valid WAV header with 0 frames",
        {"audio": blob("empty wav", media.empty_wav)},
        invalid("the audio decodes to no samples (empty or truncated file)"),
        http_api=True,
    ),
    Case(
        "mp3-cut-to-400-bytes",
        "an MP3 cut after 400 bytes",
        {"audio": blob("mp3[:400]", lambda: media.mp3()[:400])},
        COULD_NOT_DECODE,
    ),
    Case(
        "mp3-cut-in-half",
        "an MP3 of 2 s cut in half: valid, decodes what is there",
        {"audio": blob("mp3[:half]", lambda: media.mp3()[: len(media.mp3()) // 2])},
        ok("decodes the first second", lasts_between(0.8, 1.1)),
    ),
    Case(
        "video-without-audio",
        "a Matroska file with a video stream only",
        {"audio": blob("video", media.video_only)},
        invalid("the file has no audio stream"),
    ),
    Case(
        "nan-samples",
        "a float WAV whose samples are all NaN: valid, must not crash",
        {"audio": blob("nan wav", media.nan_wav)},
        ok("answers (no crash)", lasts(1.0)),
    ),
    Case(
        "hour-of-silence",
        "an hour of digital silence (FLAC, 656 KB): valid",
        {"audio": blob("1 h silence", lambda: silent_flac(3600.0))},
        ok("answers; duration 3600 s; no speakers", hour_of_silence),
        paths={"diarization": limit(f"audio is longer than the limit of {DIARIZATION_MAX_SECONDS:.0f} s")},
    ),
    Case(
        "two-hours-of-silence",
        "two hours of silence, over the duration limit",
        {"audio": blob("2 h silence", lambda: silent_flac(7200.0))},
        limit(f"audio is longer than the limit of {TRANSCRIPTION_MAX_SECONDS:.0f} s"),
        paths={"diarization": limit(f"audio is longer than the limit of {DIARIZATION_MAX_SECONDS:.0f} s")},
    ),
    Case(
        "payload-over-the-audio-limit",
        f"2.5 MiB of bytes (limit {MAX_AUDIO_BYTES} bytes)",
        {"audio": blob("2.5 MiB", lambda: b"\0" * (MAX_AUDIO_BYTES + MAX_AUDIO_BYTES // 4))},
        limit(f"bytes; the limit is {MAX_AUDIO_BYTES} bytes"),
    ),
    Case(
        "payload-over-the-grpc-message-limit",
        f"5 MiB of bytes (gRPC message limit {MAX_MESSAGE_BYTES} bytes)",
        {"audio": blob("5 MiB", lambda: b"\0" * (5 * 1024 * 1024))},
        limit(f"bytes; the limit is {MAX_AUDIO_BYTES} bytes"),
        paths={"grpc": limit("Received message larger than max")},
    ),
    Case(
        "format-hint-wrong",
        'a WAV sent with "audio_format": "mp3": valid, the file is sniffed',
        {"audio": GOOD, "audio_format": "mp3"},
        ok("decoded as WAV", lasts(1.0)),
    ),
    Case(
        "format-hint-unknown",
        'text sent with "audio_format": "no-such-format"',
        {"audio": NOT_AUDIO, "audio_format": "no-such-format"},
        invalid("could not decode the audio as 'no-such-format'"),
    ),
    Case(
        "hls-playlist-to-loopback",
        'an HLS playlist whose segment is on 127.0.0.1, "audio_format": "hls"',
        {"audio": Blob("playlist", media.hls_playlist), "audio_format": "hls"},
        invalid("could not decode the audio"),
    ),
    Case(
        "ffconcat-local-file",
        "an ffconcat script naming a WAV in the server's working directory",
        {"audio": blob("ffconcat", media.ffconcat_local_file)},
        invalid("could not decode the audio"),
    ),
    # -- audio URLs: refused before connecting ----------------------------------------------
    Case(
        "url-loopback",
        "http://127.0.0.1:PORT/good.wav (the tests' own server)",
        {"audio": f"{HTTP}/good.wav"},
        invalid(f"the audio URL's host '127.0.0.1' {NON_PUBLIC}"),
        http_api=True,
    ),
    Case(
        "url-localhost",
        "http://localhost:PORT/good.wav",
        {"audio": f"http://localhost:{PORT}/good.wav"},
        invalid(f"the audio URL's host 'localhost' {NON_PUBLIC}"),
    ),
    Case(
        "url-private-10",
        "http://10.0.0.7/a.wav",
        {"audio": "http://10.0.0.7/a.wav"},
        invalid(f"the audio URL's host '10.0.0.7' {NON_PUBLIC}"),
    ),
    Case(
        "url-cloud-metadata",
        "http://169.254.169.254/latest/meta-data/",
        {"audio": "http://169.254.169.254/latest/meta-data/"},
        invalid(f"the audio URL's host '169.254.169.254' {NON_PUBLIC}"),
        http_api=True,
    ),
    Case(
        "url-ipv6-loopback",
        "http://[::1]:PORT/good.wav",
        {"audio": f"http://[::1]:{PORT}/good.wav"},
        invalid(f"the audio URL's host '::1' {NON_PUBLIC}"),
    ),
    Case(
        "url-ipv4-mapped-metadata",
        "http://[::ffff:169.254.169.254]/",
        {"audio": "http://[::ffff:169.254.169.254]/latest/meta-data/"},
        invalid(f"the audio URL's host '::ffff:169.254.169.254' {NON_PUBLIC}"),
    ),
    Case(
        "url-decimal-loopback",
        "http://2130706433:PORT/ (127.0.0.1 as one decimal number)",
        {"audio": f"http://2130706433:{PORT}/good.wav"},
        invalid(f"the audio URL's host '2130706433' {NON_PUBLIC}"),
    ),
    Case(
        "url-file-scheme-string",
        '"audio": "file:///etc/passwd" (gRPC: audio.uri)',
        {"audio": "file:///etc/passwd"},
        invalid("'audio' must be an http(s) URL or base64-encoded audio; the string given is neither"),
        paths={"grpc": NOT_HTTP},
        grpc={"audio": {"uri": "file:///etc/passwd"}},
        http_api=True,
    ),
    Case(
        "url-file-scheme-uri",
        '"audio": {"uri": "file:///etc/passwd"}',
        {"audio": {"uri": "file:///etc/passwd"}},
        NOT_HTTP,
    ),
    Case(
        "url-ftp-scheme",
        '"audio": {"uri": "ftp://127.0.0.1/a.wav"}',
        {"audio": {"uri": "ftp://127.0.0.1/a.wav"}},
        NOT_HTTP,
    ),
    Case(
        "url-without-host",
        "http:///a.wav",
        {"audio": "http:///a.wav"},
        NOT_HTTP,
    ),
    Case(
        "url-unparseable",
        "http://127.0.0.1:99999/ (port out of range)",
        {"audio": "http://127.0.0.1:99999/a.wav"},
        invalid("the audio URL is not a valid URL"),
    ),
    # -- audio URLs on an allow-listed loopback server ----------------------------------------
    Case(
        "redirect-to-private",
        "allow-listed 127.0.0.1 answering 302 to http://10.0.0.7/",
        {"audio": f"{HTTP}/to-private"},
        invalid(f"the audio URL's host '10.0.0.7' {NON_PUBLIC}"),
        env=ALLOW_LOOPBACK,
        fetches=True,
    ),
    Case(
        "redirect-to-metadata",
        "allow-listed 127.0.0.1 answering 302 to http://169.254.169.254/",
        {"audio": f"{HTTP}/to-metadata"},
        invalid(f"the audio URL's host '169.254.169.254' {NON_PUBLIC}"),
        env=ALLOW_LOOPBACK,
        fetches=True,
    ),
    Case(
        "redirect-to-file",
        "allow-listed 127.0.0.1 answering 302 to file:///etc/passwd",
        {"audio": f"{HTTP}/to-file"},
        NOT_HTTP,
        env=ALLOW_LOOPBACK,
        fetches=True,
    ),
    Case(
        "redirect-loop",
        "allow-listed 127.0.0.1 redirecting to itself",
        {"audio": f"{HTTP}/loop"},
        invalid("the audio URL redirected more than 5 times"),
        env=ALLOW_LOOPBACK,
        fetches=True,
    ),
    Case(
        "url-404",
        "allow-listed 127.0.0.1 answering 404",
        {"audio": f"{HTTP}/missing"},
        invalid("fetching the audio URL failed: HTTP 404"),
        env=ALLOW_LOOPBACK,
        fetches=True,
    ),
    Case(
        "url-over-the-size-limit",
        "allow-listed 127.0.0.1 declaring 3 MiB",
        {"audio": f"{HTTP}/huge"},
        limit(f"the audio URL serves 3145728 bytes; the limit is {MAX_AUDIO_BYTES} bytes"),
        env=ALLOW_LOOPBACK,
        fetches=True,
    ),
    Case(
        "url-serving-text",
        "allow-listed 127.0.0.1 serving a text file",
        {"audio": f"{HTTP}/text"},
        COULD_NOT_DECODE,
        env=ALLOW_LOOPBACK,
        fetches=True,
    ),
    # -- other fields: unknown, wrong types, impossible values ------------------------------
    Case(
        "unknown-field",
        '"foo": 1 beside good audio (gRPC: unknown field 99, which proto3 ignores)',
        {"audio": GOOD, "foo": 1},
        invalid('has no field named "foo"'),
        paths={"grpc": ok("answers (1 s)", lasts(1.0))},
        grpc=wire(audio_pb2.Audio(content=media.good_wav()), extra=UNKNOWN_FIELD_99),
        http_api=True,
    ),
    Case(
        "bool-as-string",
        '"word_timestamps": "yes" / "exclusive": "yes"',
        {"audio": NOT_AUDIO, "word_timestamps": "yes"},
        invalid("Expected true or false without quotes"),
        jobs={"diarization": {"audio": NOT_AUDIO, "exclusive": "yes"}},
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
        http_api=True,
    ),
    Case(
        "bool-as-number",
        '"timestamps": 1 / "exclusive": 1',
        {"audio": NOT_AUDIO, "timestamps": 1},
        invalid("Expected true or false without quotes"),
        jobs={"diarization": {"audio": NOT_AUDIO, "exclusive": 1}},
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    Case(
        "language-not-a-string",
        '"language": {"code": "en"}',
        {"audio": NOT_AUDIO, "language": {"code": "en"}},
        invalid("Failed to parse language field"),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    Case(
        "language-unsupported",
        '"language": "fr"',
        {"audio": NOT_AUDIO, "language": "fr"},
        invalid("language 'fr' is not supported: parakeet-tdt-0.6b-v2 transcribes English ('en')"),
        paths={"diarization": COULD_NOT_DECODE},
    ),
    Case(
        "diarize-as-string",
        '"diarize": "yes"',
        {"audio": NOT_AUDIO, "diarize": "yes"},
        invalid("Failed to parse diarize field: Expected true or false without quotes"),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    speakers(
        "num-speakers-zero",
        '"num_speakers": 0',
        {"num_speakers": 0},
        invalid("num_speakers must be at least 1 (got 0); leave it unset to let the model estimate"),
    ),
    speakers(
        "num-speakers-negative",
        '"num_speakers": -1',
        {"num_speakers": -1},
        invalid("num_speakers must be at least 1 (got -1)"),
    ),
    speakers(
        "num-speakers-1000",
        '"num_speakers": 1000',
        {"num_speakers": 1000},
        invalid("num_speakers must be at most 100 (got 1000)"),
    ),
    speakers(
        "min-speakers-above-max",
        '"min_speakers": 5, "max_speakers": 2',
        {"min_speakers": 5, "max_speakers": 2},
        invalid("min_speakers (5) must not be greater than max_speakers (2)"),
    ),
    speakers(
        "num-speakers-below-min",
        '"num_speakers": 1, "min_speakers": 2',
        {"num_speakers": 1, "min_speakers": 2},
        invalid("num_speakers (1) is below min_speakers (2); set one or the other"),
    ),
    Case(
        "num-speakers-not-an-integer",
        '"num_speakers": 2.5 / "two" / 2**40',
        {"audio": NOT_AUDIO, "num_speakers": 2.5},
        invalid("Couldn't parse integer: 2.5"),
        jobs={"diarization": {"audio": NOT_AUDIO, "num_speakers": "two"}},
        paths={
            "runpod:diarization": invalid("Failed to parse num_speakers field"),
            "grpc": COULD_NOT_DECODE,
        },
        grpc={"audio": NOT_AUDIO},
    ),
    Case(
        "num-speakers-out-of-int32",
        '"num_speakers": 2**40',
        {"audio": NOT_AUDIO, "num_speakers": 2**40},
        invalid("Failed to parse num_speakers field: Value out of range"),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    Case(
        "speaker-counts-without-diarize",
        '"num_speakers": -1 with diarize unset',
        {"audio": GOOD, "num_speakers": -1},
        invalid("num_speakers must be at least 1 (got -1)"),
        paths={
            "orchestrator": invalid("num_speakers must be at least 1 (got -1)"),
            "runpod:transcription": ok(
                "transcribed (1 s), num_speakers ignored", ignoring("num_speakers", then=lasts(1.0))
            ),
            "grpc:transcription": TRANSCRIBED_ONE_SECOND,
        },
    ),
    # -- response_format ---------------------------------------------------------------------
    Case(
        "response-format-unknown-name",
        '"response_format": "mp4" (gRPC: enum value 99)',
        {"audio": NOT_AUDIO, "response_format": "mp4"},
        invalid(f"the transcription service has no response_format 'mp4'; use one of: {TRANSCRIPT_FORMATS}"),
        paths={
            "diarization": invalid(
                f"the diarization service has no response_format 'mp4'; use one of: {TURN_FORMATS}"
            ),
            "orchestrator": invalid(
                f"the orchestrator service has no response_format 'mp4'; use one of: {TRANSCRIPT_FORMATS}"
            ),
            "grpc:transcription": invalid(
                f"the transcription service has no response_format 99; use one of: {TRANSCRIPT_FORMATS}"
            ),
            "grpc:diarization": invalid(
                f"the diarization service has no response_format 99; use one of: {TURN_FORMATS}"
            ),
            "grpc:orchestrator": invalid(
                f"the orchestrator service has no response_format 99; use one of: {TRANSCRIPT_FORMATS}"
            ),
        },
        grpc={"audio": NOT_AUDIO, "response_format": 99},
        http_api=True,
    ),
    Case(
        "response-format-unknown-number",
        '"response_format": 99',
        {"audio": NOT_AUDIO, "response_format": 99},
        invalid(f"the transcription service has no response_format 99; use one of: {TRANSCRIPT_FORMATS}"),
        paths={
            "diarization": invalid(
                f"the diarization service has no response_format 99; use one of: {TURN_FORMATS}"
            ),
            "orchestrator": invalid(
                f"the orchestrator service has no response_format 99; use one of: {TRANSCRIPT_FORMATS}"
            ),
        },
    ),
    Case(
        "response-format-not-a-string",
        '"response_format": ["srt"]',
        {"audio": NOT_AUDIO, "response_format": ["srt"]},
        invalid("Failed to parse response_format field"),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    Case(
        "rttm-without-speakers",
        '"response_format": "rttm" on transcription (and on the orchestrator without diarize)',
        {"audio": GOOD, "response_format": "rttm"},
        invalid(
            "the transcription service has no response_format rttm (it lists speaker turns: use the "
            f"diarization or orchestrator service); use one of: {TRANSCRIPT_FORMATS}"
        ),
        paths={
            "diarization": ok("RTTM document", rttm_document),
            "orchestrator": invalid(
                f"response_format rttm lists speaker turns: set diarize=true, or use one of: {TRANSCRIPT_FORMATS}"
            ),
        },
        http_api=True,
    ),
    Case(
        "srt-from-diarization",
        '"response_format": "srt" on diarization',
        {"audio": GOOD, "response_format": "srt"},
        invalid(
            "the diarization service has no response_format srt (it renders a transcript: use the "
            f"transcription or orchestrator service); use one of: {TURN_FORMATS}"
        ),
        paths={
            "transcription": ok("SRT document", srt_document),
            "orchestrator": ok("SRT document", srt_document),
        },
    ),
    # -- diarization_segments (TranscriptionService only) ------------------------------------
    turns_case(
        "turn-negative-start",
        "a speaker turn starting at -1 s",
        [{"start": -1.0, "end": 1.0, "speaker": "A"}],
        invalid("diarization_segments[0]: needs 0 <= start <= end (got start=-1.0, end=1.0)"),
        http_api=True,
    ),
    turns_case(
        "turn-ending-before-it-starts",
        "a speaker turn from 5 s to 2 s",
        [{"start": 0.0, "end": 1.0, "speaker": "A"}, {"start": 5.0, "end": 2.0, "speaker": "B"}],
        invalid("diarization_segments[1]: needs 0 <= start <= end (got start=5.0, end=2.0)"),
    ),
    turns_case(
        "turn-nan",
        'a speaker turn starting at "NaN"',
        [{"start": "NaN", "end": 1.0, "speaker": "A"}],
        invalid("diarization_segments[0]: start and end must be finite numbers of seconds"),
    ),
    turns_case(
        "turn-infinite",
        'a speaker turn ending at "Infinity"',
        [{"start": 0.0, "end": "Infinity", "speaker": "A"}],
        invalid("diarization_segments[0]: start and end must be finite numbers of seconds"),
    ),
    turns_case(
        "turn-without-speaker",
        "a speaker turn with a blank label",
        [{"start": 0.0, "end": 1.0, "speaker": "  "}],
        invalid("diarization_segments[0]: speaker label is empty"),
    ),
    turns_case(
        "turns-not-a-list",
        '"diarization_segments": {"start": 0}',
        {"start": 0},
        invalid("repeated field diarization_segments must be in []"),
        mistyped=True,
        paths={"grpc:transcription": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    turns_case(
        "turn-wrong-types",
        '"diarization_segments": [{"start": "zero"}]',
        [{"start": "zero"}],
        invalid("Failed to parse start field: Couldn't parse float: zero"),
        mistyped=True,
        paths={"grpc:transcription": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    turns_case(
        "turn-null",
        '"diarization_segments": [null]',
        [None],
        invalid("null is not allowed to be used as an element in a repeated field"),
        mistyped=True,
        paths={"grpc:transcription": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    # -- huge strings ------------------------------------------------------------------------
    Case(
        "huge-language",
        f'"language" of {HUGE:,} characters',
        {"audio": NOT_AUDIO, "language": "x" * HUGE},
        invalid("is not supported: parakeet-tdt-0.6b-v2 transcribes English"),
        paths={"diarization": COULD_NOT_DECODE},
    ),
    Case(
        "huge-unknown-field-name",
        "an unknown field whose name has 100,000 characters",
        {"audio": NOT_AUDIO, "f" * 100_000: 1},
        invalid("has no field named"),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    Case(
        "huge-response-format",
        '"response_format" of 100,000 characters',
        {"audio": NOT_AUDIO, "response_format": "x" * 100_000},
        invalid("has no response_format 'xxx"),
        paths={"grpc": COULD_NOT_DECODE},
        grpc={"audio": NOT_AUDIO},
    ),
    Case(
        "huge-audio-format",
        '"audio_format" of 100,000 characters with undecodable audio',
        {"audio": NOT_AUDIO, "audio_format": "x" * 100_000},
        invalid("could not decode the audio as 'xxxx"),
    ),
    Case(
        "huge-url-host",
        f"http:// + a host name of {HUGE:,} characters",
        {"audio": "http://" + "a" * HUGE + "/a.wav"},
        invalid("cannot resolve the audio URL's host 'aaaa"),
    ),
]


# -- the table in docs/reliability.md ---------------------------------------------------------


def _cell(outcome: Outcome) -> str:
    text = outcome.code.name if outcome.code != OK else f"OK ({outcome.message})"
    if outcome.code != OK and outcome.message:
        text += f": {outcome.message}"
    text = text.replace("|", "\\|")
    return f"**bug** → should be {text}" if outcome.bug else text


def _service_cell(case: Case, service: str) -> str:
    on_grpc, on_runpod = case.outcome(service, "grpc"), case.outcome(service, "runpod")
    if on_grpc == on_runpod:
        return _cell(on_grpc)
    return f"gRPC {_cell(on_grpc)}<br>RunPod {_cell(on_runpod)}"


def markdown() -> str:
    """The corpus as the Markdown table (and list of known bugs) docs/reliability.md carries."""
    lines = [
        f"{len(CORPUS)} cases x 3 services x 2 transports = {len(CORPUS) * 6} runs "
        f"({sum(1 for case in CORPUS if case.http_api)} cases also through the RunPod HTTP API).",
        "",
        "| case | sends | TranscriptionService | DiarizationService | OrchestratorService |",
        "|---|---|---|---|---|",
    ]
    for case in CORPUS:
        cells = [_service_cell(case, service) for service in SERVICES]
        sends = case.sends.replace("|", "\\|")
        lines.append(f"| `{case.name}` | {sends} | " + " | ".join(cells) + " |")
    bugs: dict[str, list[str]] = {}
    for case in CORPUS:
        for service in SERVICES:
            for transport in TRANSPORTS:
                reason = case.outcome(service, transport).bug
                if reason and case.name not in bugs.setdefault(reason, []):
                    bugs[reason].append(case.name)
    if bugs:
        lines += ["", "Known bugs (the runs are strict xfails until fixed):", ""]
    lines += [f"- {reason} ({', '.join(f'`{name}`' for name in names)})" for reason, names in bugs.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
