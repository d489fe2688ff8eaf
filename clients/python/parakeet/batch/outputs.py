"""Where a batch run's results go: one file per item and format, and the results log.

Outputs are written atomically (a temporary file in the same directory, then `os.replace`), so a
file that exists is whole. `results.jsonl` gets one row per input, appended with flush and fsync
after the item's outputs are in place; a rerun reads it and skips every input that has a row, and
an input whose outputs are all present without a row (killed in between) gets its row without
being transcribed again. So a run killed with SIGKILL and run again ends with every input
transcribed at most once and exactly one row each.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from parakeet.batch.items import BatchItem
from parakeet.render import render_response
from parakeet.runpod import response_to_json
from parakeet.v1 import orchestrator_pb2

# The formats a batch writes and each one's file suffix.
SUFFIXES: dict[str, str] = {"json": "json", "text": "txt", "srt": "srt", "vtt": "vtt", "rttm": "rttm"}
FORMATS = tuple(SUFFIXES)
RESULTS = "results.jsonl"
# Temporary files carry this marker; a run removes the ones a killed run left behind.
_TEMP_MARK = ".parakeet-tmp-"

Status = Literal["done", "failed"]


def parse_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    """`json,srt` (or a list) as the batch's formats, in the order given, each once; `txt` is `text`.
    An unknown name is ValueError naming the ones there are."""
    names = value.split(",") if isinstance(value, str) else list(value)
    chosen: list[str] = []
    for name in (part.strip().lower() for part in names):
        name = "text" if name == "txt" else name
        if name not in SUFFIXES:
            raise ValueError(f"no batch format {name!r}; use one or more of: {', '.join(FORMATS)}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"no format given; use one or more of: {', '.join(FORMATS)}")
    return tuple(chosen)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}{_TEMP_MARK}{os.getpid()}-{threading.get_ident()}")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class Outputs:
    """The output files of a run: `out_dir/<key>.<suffix>` for each of `formats`."""

    def __init__(self, out_dir: Path | str, formats: Sequence[str]) -> None:
        self.out_dir = Path(out_dir)
        self.formats = tuple(formats)

    def paths(self, item: BatchItem) -> dict[str, Path]:
        """Each format's file for `item`."""
        return {name: self.out_dir / f"{item.key}.{SUFFIXES[name]}" for name in self.formats}

    def is_complete(self, item: BatchItem) -> bool:
        """Whether every file of `item` is there (written whole, since writes are atomic)."""
        return all(path.is_file() for path in self.paths(item).values())

    def documents(self, item: BatchItem, response: orchestrator_pb2.OrchestrateResponse) -> dict[str, str]:
        """Each format's text for `item`: json is the response as the client's JSON mapping,
        the others are rendered here from the (verbose) response."""
        file_id = "_".join(item.key.split("/")[-1].split()) or "audio"
        texts: dict[str, str] = {}
        for name in self.formats:
            if name == "json":
                texts[name] = json.dumps(response_to_json(response), indent=2, ensure_ascii=False) + "\n"
            else:
                texts[name] = render_response(response, name, file_id)
        return texts

    def write(self, item: BatchItem, response: orchestrator_pb2.OrchestrateResponse) -> list[str]:
        """Write every format of `item`; the written paths relative to `out_dir` (POSIX)."""
        paths = self.paths(item)
        for name, text in self.documents(item, response).items():
            _write_atomic(paths[name], text)
        return [path.relative_to(self.out_dir).as_posix() for path in paths.values()]

    def remove_leftovers(self) -> int:
        """Delete temporary files a killed run left; how many there were."""
        removed = 0
        if self.out_dir.is_dir():
            for path in self.out_dir.rglob(f".*{_TEMP_MARK}*"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


@dataclass(frozen=True)
class ResultRow:
    """One line of results.jsonl: how one input ended."""

    source: str
    key: str
    status: Status
    duration_s: float = 0.0  # the audio's length
    seconds: float = 0.0  # wall time spent on it
    error: str = ""
    reason: str = ""
    outputs: list[str] = field(default_factory=list)
    # The known speakers (--speaker, a manifest's speakers) whose voices were found in it, by name.
    matched_speakers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> ResultRow:
        status = data.get("status")
        if status not in ("done", "failed"):
            raise ValueError(f"status {status!r}")
        return ResultRow(
            source=str(data["source"]),
            key=str(data["key"]),
            status=status,
            duration_s=float(data.get("duration_s") or 0.0),
            seconds=float(data.get("seconds") or 0.0),
            error=str(data.get("error") or ""),
            reason=str(data.get("reason") or ""),
            outputs=[str(path) for path in data.get("outputs") or []],
            matched_speakers=[str(name) for name in data.get("matched_speakers") or []],
        )


class ResultsLog:
    """results.jsonl: appended one row at a time (thread-safe, flushed and fsynced), read back
    by key on a rerun. A last line cut short by a kill is dropped when the log is opened."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._rows = self._read()

    def _read(self) -> dict[str, ResultRow]:
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):  # a row cut short by a kill: its input is not done
            with self.path.open("r+b") as handle:
                handle.truncate(len(whole))
        rows: dict[str, ResultRow] = {}
        for line in whole.decode("utf-8", errors="replace").splitlines():
            try:
                row = ResultRow.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # not a row of ours: ignored, as it names no input
            rows.setdefault(row.key, row)
        return rows

    def rows(self) -> dict[str, ResultRow]:
        """The first row of every key logged so far."""
        with self._lock:
            return dict(self._rows)

    def get(self, key: str) -> ResultRow | None:
        with self._lock:
            return self._rows.get(key)

    def append(self, row: ResultRow) -> None:
        """Add `row` durably; a key already logged is not logged twice."""
        line = json.dumps(row.to_json(), ensure_ascii=False) + "\n"
        with self._lock:
            if row.key in self._rows:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._rows[row.key] = row


def matched_names(identities: Iterable[Any]) -> list[str]:
    """The names of the known speakers matched (SpeakerIdentity messages or their JSON), in order."""
    names = (
        identity.get("name") if isinstance(identity, Mapping) else getattr(identity, "name", "")
        for identity in identities
    )
    return [str(name) for name in names if name]


def recovered_row(item: BatchItem, outputs: Outputs) -> ResultRow:
    """The row of an item whose outputs were all written before a kill took its row: done, with
    the audio's length and matched speakers read back from its json output when there is one."""
    duration, matched = 0.0, []
    json_path = outputs.paths(item).get("json")
    if json_path is not None:
        try:
            document = json.loads(json_path.read_text(encoding="utf-8"))
            duration = float(document.get("duration") or 0.0)
            matched = matched_names(document.get("speaker_identities") or [])
        except (OSError, ValueError, AttributeError, TypeError):
            duration, matched = 0.0, []
    written = [path.relative_to(outputs.out_dir).as_posix() for path in outputs.paths(item).values()]
    return ResultRow(
        item.source, item.key, "done", duration_s=duration, outputs=written, matched_speakers=matched
    )


def pending(items: Iterable[BatchItem], outputs: Outputs, log: ResultsLog) -> tuple[list[BatchItem], int]:
    """The items still to transcribe, and how many were skipped (already logged, or complete and
    now logged). Also removes the temporary files of a killed run."""
    outputs.remove_leftovers()
    todo: list[BatchItem] = []
    skipped = 0
    for item in items:
        if log.get(item.key) is not None:
            skipped += 1
        elif outputs.is_complete(item):
            log.append(recovered_row(item, outputs))
            skipped += 1
        else:
            todo.append(item)
    return todo, skipped
