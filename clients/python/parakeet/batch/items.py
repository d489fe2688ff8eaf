"""What a batch run transcribes: its inputs expanded into items, and each item's request.

`expand` turns the command line's inputs (files, directories, globs, .jsonl/.csv manifests,
http(s) URLs) into `BatchItem`s in a stable order, each with a `key`: the output stem, unique
across the run and the same on every rerun (so a rerun finds what the last one wrote). A
directory keeps its files' layout under the output directory; clashing stems get `-2`, `-3`...
`request_for` builds the one OrchestrateRequest per item, always with segments, words and
utterances, so every asked format can be rendered from its response on the client.

A manifest's wrong shapes (a count that is no number, hotwords that are no list of text) refuse
the run (usage error); what a request would be refused for (a boost out of range, a voiceprint
file that is missing or not one, known speakers on a file not diarized) is that item's failure,
recorded with its reason, as an unreadable audio file is.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from parakeet.client import audio_message, is_url, parse_hotword, read_voiceprint
from parakeet.errors import InvalidArgument
from parakeet.hotwords import HotwordError, normalised_hotwords
from parakeet.v1 import audio_pb2, orchestrator_pb2

# Suffixes a directory walk picks up (lower case): what PyAV/FFmpeg decodes.
AUDIO_SUFFIXES = frozenset(
    {
        ".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif",
        ".amr", ".webm", ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".mpeg", ".mpg", ".3gp", ".ts",
    }
)  # fmt: skip
MANIFEST_SUFFIXES = frozenset({".jsonl", ".csv"})
# Per-file options a manifest row may carry, with their types; the same names as the CLI's defaults.
OPTION_TYPES: dict[str, type] = {
    "diarize": bool,
    "language": str,
    "num_speakers": int,
    "min_speakers": int,
    "max_speakers": int,
    "multichannel": bool,
    "speaker_threshold": float,
    "hotwords": list,  # PHRASE[:BOOST] each (a CSV cell: ";"-separated)
    "speakers": list,  # *.voiceprint.json paths, relative to the manifest (a CSV cell: ";"-separated)
}
# Options the run's defaults may carry beyond those (the command line's speaker options).
DEFAULT_OPTIONS = frozenset({*OPTION_TYPES, "speakers_optional"})
# audio.proto's Hotword limits, checked here so a bad one costs no upload (the server checks them too).
_GLOB_CHARS = frozenset("*?[")


class BatchInputError(ValueError):
    """An input on the command line that names nothing to transcribe (missing path, glob with no
    match, unreadable or malformed manifest): the run refuses to start (usage error)."""


@dataclass(frozen=True)
class BatchItem:
    """One input: `source` as given (a path or URL), `key` the relative output stem (POSIX
    separators), `options` the manifest's per-file options (override the run's defaults)."""

    source: str
    key: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "key": self.key, "options": dict(self.options)}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> BatchItem:
        return BatchItem(str(data["source"]), str(data["key"]), dict(data.get("options") or {}))


def _stem_of_url(url: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return _safe(PurePosixPath(name).stem or urlsplit(url).hostname or "url")


def _safe(part: str) -> str:
    """A path component that stays one component: no separators, not `.`/`..`, not empty."""
    cleaned = part.replace("/", "_").replace("\\", "_").strip()
    return cleaned if cleaned not in ("", ".", "..") else "_"


def _stem(path: Path) -> str:
    return _safe(path.stem)


def _option(name: str, value: Any, where: str) -> Any:
    """A manifest option checked against its type; CSV cells arrive as text."""
    kind = OPTION_TYPES[name]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        with contextlib.suppress(ValueError):
            return float(str(value).strip())
    elif kind is list:
        parts = value.split(";") if isinstance(value, str) else value
        if isinstance(parts, list) and all(isinstance(part, str) for part in parts):
            return [part.strip() for part in parts if part.strip()]
        raise BatchInputError(
            f"{where}: {name} must be a list of strings (CSV: ';'-separated), got {value!r}"
        )
    elif isinstance(value, str):
        return value.strip()
    raise BatchInputError(f"{where}: {name} must be {kind.__name__}, got {value!r}")


def _manifest_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(source, options) per row of a .jsonl or .csv manifest; relative paths are relative to it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BatchInputError(f"{path}: cannot read the manifest ({error})") from None
    records: list[tuple[str, Mapping[str, Any]]] = []
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BatchInputError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise BatchInputError(f"{path}:{number}: each line must be a JSON object")
            records.append((f"{path}:{number}", record))
    else:
        reader = csv.DictReader(text.splitlines())
        for number, record in enumerate(reader, start=2):
            records.append((f"{path}:{number}", {k.strip(): v for k, v in record.items() if k and v != ""}))
    rows: list[tuple[str, dict[str, Any]]] = []
    for where, record in records:
        source = record.get("path") or record.get("url")
        if not isinstance(source, str) or not source.strip():
            raise BatchInputError(f"{where}: needs a 'path' or 'url'")
        source = source.strip()
        if not is_url(source) and not Path(source).is_absolute():
            source = str(path.parent / source)
        options = {name: _option(name, record[name], where) for name in OPTION_TYPES if name in record}
        if "speakers" in options:
            options["speakers"] = [str(path.parent / speaker) for speaker in options["speakers"]]
        rows.append((source, options))
    return rows


def _directory(root: Path) -> list[tuple[str, str]]:
    """(source, key) for the audio files under `root`, sorted, keys relative to `root`."""
    found = sorted(
        path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES
    )
    pairs = []
    for path in found:
        relative = path.relative_to(root)
        parts = [_safe(part) for part in relative.parent.parts] + [_stem(relative)]
        pairs.append((str(path), "/".join(parts)))
    return pairs


def _one(value: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(source, wanted key, options) for one command-line input."""
    if is_url(value):
        return [(value.strip(), _stem_of_url(value), {})]
    path = Path(value)
    if path.is_dir():
        return [(source, key, {}) for source, key in _directory(path)]
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return [
            (source, _stem_of_url(source) if is_url(source) else _stem(Path(source)), options)
            for source, options in _manifest_rows(path)
        ]
    if path.is_file():
        return [(str(path), _stem(path), {})]
    if _GLOB_CHARS & set(value):
        matches = sorted(glob.glob(value, recursive=True))
        files = [match for match in matches if Path(match).is_file()]
        if not files:
            raise BatchInputError(f"{value}: the pattern matches no file")
        return [(match, _stem(Path(match)), {}) for match in files]
    raise BatchInputError(
        f"{value}: no such file or directory "
        "(give audio files, directories, globs, a .jsonl/.csv manifest, or http(s) URLs)"
    )


def expand(inputs: Iterable[str]) -> list[BatchItem]:
    """Every input's items in command-line order; keys made unique in that order (`x`, `x-2`...)."""
    items: list[BatchItem] = []
    taken: set[str] = set()
    for value in inputs:
        for source, wanted, options in _one(value):
            key, number = wanted, 1
            while key.lower() in taken:
                number += 1
                key = f"{wanted}-{number}"
            taken.add(key.lower())
            items.append(BatchItem(source, key, options))
    if not items:
        raise BatchInputError("nothing to transcribe: the inputs hold no audio files")
    return items


def options_for(item: BatchItem, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The run's defaults with the item's own options over them."""
    return {**{k: v for k, v in defaults.items() if k in DEFAULT_OPTIONS}, **item.options}


def check_hotwords(hotwords: Sequence[str], field: str = "hotwords") -> None:
    """`PHRASE[:BOOST]` texts within audio.proto's limits (parakeet.hotwords, the server's own rules),
    else InvalidArgument (INVALID_FIELD) saying which."""
    try:
        normalised_hotwords(
            [parse_hotword(text) for text in hotwords], field, lambda index: f"{field} {hotwords[index]!r}"
        )
    except HotwordError as error:
        raise InvalidArgument(str(error), reason="INVALID_FIELD") from None


def check_threshold(threshold: float | None, field: str = "speaker_threshold") -> None:
    """A match threshold is a cosine similarity: InvalidArgument (INVALID_FIELD) outside [-1, 1]."""
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InvalidArgument(
            f"{field} is a cosine similarity: give a value in [-1, 1], not {threshold:g}",
            reason="INVALID_FIELD",
        )


def read_speakers(paths: Sequence[str], field: str = "speakers") -> list[audio_pb2.KnownSpeaker]:
    """The voiceprint files as known speakers; InvalidArgument (INVALID_FIELD) naming a file that is
    missing or not a voiceprint."""
    try:
        return [read_voiceprint(path) for path in paths]
    except ValueError as error:
        raise InvalidArgument(f"{field}: {error}", reason="INVALID_FIELD") from None


def request_for(item: BatchItem, defaults: Mapping[str, Any]) -> orchestrator_pb2.OrchestrateRequest:
    """The item's request: a local file's bytes (read here) or its URL as `audio.uri` (fetched by
    the server through its SSRF-guarded fetcher), asked back with segments, words and utterances.

    The run's known speakers (and threshold) go with the files it diarizes only; an item's own
    `speakers` without diarize is refused. What is wrong with the item (an unreadable file is
    AUDIO_MISSING, a bad hotword or voiceprint file INVALID_FIELD) is `InvalidArgument`, recorded
    as the item's failure."""
    options = options_for(item, defaults)
    diarize = bool(options.get("diarize", False))
    hotwords = list(options.get("hotwords", ()))
    check_hotwords(hotwords)
    if item.options.get("speakers") and not diarize:
        raise InvalidArgument(
            "speakers names the speakers diarization finds: set diarize (true) for this file, or --diarize",
            reason="INVALID_FIELD",
        )
    threshold = options.get("speaker_threshold") if diarize else None
    check_threshold(threshold)
    known = read_speakers(options.get("speakers", ())) if diarize else []
    try:
        audio = audio_message(item.source)
    except OSError as error:
        raise InvalidArgument(
            f"{item.source}: cannot read the file ({error.strerror or error})", reason="AUDIO_MISSING"
        ) from None
    return orchestrator_pb2.OrchestrateRequest(
        audio=audio,
        diarize=diarize,
        response_format=audio_pb2.RESPONSE_FORMAT_VERBOSE_JSON,
        language=str(options.get("language", "")),
        word_timestamps=True,
        num_speakers=options.get("num_speakers"),
        min_speakers=options.get("min_speakers"),
        max_speakers=options.get("max_speakers"),
        speakers_optional=bool(options.get("speakers_optional", False)),
        hotwords=[parse_hotword(text) for text in hotwords],
        known_speakers=known,
        speaker_match_threshold=threshold,
        multichannel=bool(options.get("multichannel", False)),
    )
