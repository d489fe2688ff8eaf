"""Known speakers as OpenAI sends them -> the orchestrator's KnownSpeaker messages; pure, no I/O.

OpenAI's form: `known_speaker_names[]` and `known_speaker_references[]`, the same number of each,
a reference being the speaker's voice as a data URL (`data:audio/wav;base64,...`, any container
the services decode). This API's extension `known_speaker_voiceprints[]` takes the JSON of a
voiceprint file (`parakeet enroll` writes one; it holds the name), so a voice enrolled once needs
no audio on later requests. The diarizer enrols references on the fly and refuses too little
speech (AUDIO_TOO_SHORT) or a voiceprint of another model (VOICEPRINT_MISMATCH); those refusals
pass through with their reasons.

A reference is only ever a data URL: any other URL (http, https, file, ...) is refused with
URL_FORBIDDEN and never fetched, so a request cannot make the server reach an internal address.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Sequence

from google.protobuf import json_format

from parakeet.v1 import audio_pb2
from parakeet_server.gateway.errors import GatewayError

NAMES = "known_speaker_names[]"
REFERENCES = "known_speaker_references[]"
VOICEPRINTS = "known_speaker_voiceprints[]"
DATA_SCHEME = "data:"
# The longest name accepted (the diarizer's own limit is larger; this keeps labels readable).
MAX_NAME_CHARS = 100


def _invalid(reason: str, message: str, param: str) -> GatewayError:
    return GatewayError.for_reason(reason, message, param=param)


def decode_data_url(url: str, where: str, param: str = REFERENCES) -> bytes:
    """The bytes of a data URL (base64 or percent-encoded); anything else is refused, never fetched."""
    text = url.strip()
    if not text.lower().startswith(DATA_SCHEME):
        scheme, colon, _ = text.partition(":")
        shown = f"a {scheme.lower()}: URL" if colon and scheme.isalpha() else "not a URL"
        raise _invalid(
            "URL_FORBIDDEN",
            f"{where} is {shown}; references must be data URLs (data:audio/wav;base64,...): this server "
            "never fetches a URL, send the recording itself",
            param,
        )
    header, comma, payload = text[len(DATA_SCHEME) :].partition(",")
    if not comma:
        raise _invalid("INVALID_FIELD", f"{where} is a data URL without ',' before its data", param)
    parameters = [part.strip().lower() for part in header.split(";")]
    if "base64" in parameters[1:]:
        try:
            data = base64.b64decode("".join(urllib.parse.unquote(payload).split()), validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(
                "INVALID_BASE64",
                f"{where} does not hold valid base64 after 'base64,'; encode the audio file's bytes in "
                "standard base64",
                param,
            ) from None
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if not data:
        raise _invalid("AUDIO_MISSING", f"{where} holds no audio (0 bytes)", param)
    return data


def _voiceprint(text: str, where: str) -> audio_pb2.KnownSpeaker:
    """One voiceprint file's JSON as a KnownSpeaker (name and voiceprint)."""
    try:
        speaker = json_format.Parse(text, audio_pb2.KnownSpeaker())
    except json_format.ParseError as error:
        raise _invalid(
            "INVALID_FIELD",
            f"{where} is not the JSON of a voiceprint file (made by `parakeet enroll`): {error}",
            VOICEPRINTS,
        ) from None
    if speaker.WhichOneof("voice") != "voiceprint" or not speaker.voiceprint.embedding:
        raise _invalid(
            "INVALID_FIELD",
            f"{where} holds no voiceprint embedding; make it with `parakeet enroll`",
            VOICEPRINTS,
        )
    return speaker


def _check_names(speakers: Sequence[audio_pb2.KnownSpeaker], params: Sequence[str]) -> None:
    """Names present, not too long, and unique across names and voiceprints."""
    seen: set[str] = set()
    for index, (speaker, param) in enumerate(zip(speakers, params, strict=True)):
        name = speaker.name.strip()
        if not name:
            raise _invalid(
                "INVALID_FIELD", f"known speaker {index + 1} has an empty name; name every one", param
            )
        if len(name) > MAX_NAME_CHARS:
            raise _invalid(
                "INVALID_FIELD",
                f"the known speaker name {name[:20]!r}... is over {MAX_NAME_CHARS} characters",
                param,
            )
        if name in seen:
            raise _invalid(
                "INVALID_FIELD",
                f"the known speaker name {name!r} is given twice; names must be unique",
                param,
            )
        seen.add(name)
        speaker.name = name


def known_speakers(
    names: Sequence[str], references: Sequence[str], voiceprints: Sequence[str] = ()
) -> list[audio_pb2.KnownSpeaker]:
    """The KnownSpeaker messages for a request: names paired with references, then voiceprints."""
    if len(names) != len(references):
        raise _invalid(
            "INVALID_FIELD",
            f"{len(names)} {NAMES} but {len(references)} {REFERENCES}: send one reference (a data URL of "
            "that speaker alone) per name, in the same order",
            REFERENCES if len(names) > len(references) else NAMES,
        )
    speakers = [
        audio_pb2.KnownSpeaker(
            name=name,
            reference=audio_pb2.Audio(content=decode_data_url(url, f"{REFERENCES} {index + 1} ({name})")),
        )
        for index, (name, url) in enumerate(zip(names, references, strict=True))
    ]
    speakers += [_voiceprint(text, f"{VOICEPRINTS} {index + 1}") for index, text in enumerate(voiceprints)]
    _check_names(speakers, [NAMES] * len(names) + [VOICEPRINTS] * len(voiceprints))
    return speakers


def session_known_speakers(
    value: object, param: str = "known_speakers"
) -> tuple[audio_pb2.KnownSpeaker, ...]:
    """The realtime session's `known_speakers`: [{name, reference: data URL} or {name, voiceprint: {...}}]
    (a voiceprint file's JSON is the second shape)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(
            "INVALID_FIELD", f"session.{param} must be a list of {{name, reference|voiceprint}}", param
        )
    speakers = []
    for index, entry in enumerate(value):
        where = f"session.{param}[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _invalid("INVALID_FIELD", f"{where} must be an object with a string 'name'", param)
        name = entry["name"]
        if isinstance(entry.get("reference"), str):
            audio = decode_data_url(entry["reference"], f"{where}.reference ({name})", param)
            speakers.append(audio_pb2.KnownSpeaker(name=name, reference=audio_pb2.Audio(content=audio)))
        elif isinstance(entry.get("voiceprint"), dict):
            try:
                voiceprint = json_format.ParseDict(entry["voiceprint"], audio_pb2.Voiceprint())
            except json_format.ParseError as error:
                raise _invalid(
                    "INVALID_FIELD", f"{where}.voiceprint is not a voiceprint: {error}", param
                ) from None
            speakers.append(audio_pb2.KnownSpeaker(name=name, voiceprint=voiceprint))
        else:
            raise _invalid(
                "INVALID_FIELD",
                f"{where} ({name}) needs 'reference' (a data URL of that speaker alone) or 'voiceprint' "
                "(as `parakeet enroll` writes it)",
                param,
            )
    _check_names(speakers, [param] * len(speakers))
    return tuple(speakers)


def require_diarization(speakers: Sequence[audio_pb2.KnownSpeaker], diarizes: bool) -> None:
    """Known speakers name the speakers diarization finds, so they need it (as OpenAI's diarized_json)."""
    if speakers and not diarizes:
        raise _invalid(
            "INVALID_FIELD",
            "known speakers are named among the speakers diarization finds: use response_format=diarized_json "
            "(or diarize=true with another format)",
            NAMES,
        )
